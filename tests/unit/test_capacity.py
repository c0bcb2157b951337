"""docs/capacity.md, docs/capacity.svg and infra/k8s/capacity.py say the same thing, and the
model's inputs are the census the README prints."""

from __future__ import annotations

import importlib.util
import re
import sys
import xml.dom.minidom
from types import ModuleType

from tests.paths import ROOT

DOC = ROOT / "docs" / "capacity.md"


def model() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "capacity", ROOT / "infra" / "k8s" / "capacity.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["capacity"] = module
    spec.loader.exec_module(module)
    return module


def test_the_page_shows_the_tables_the_model_computes() -> None:
    capacity = model()
    text = DOC.read_text()
    assert capacity.cost_table() in text
    assert capacity.plan_table() in text


def test_the_plot_is_the_one_the_model_draws() -> None:
    capacity = model()
    svg = (ROOT / "docs" / "capacity.svg").read_text()
    assert svg == capacity.svg(), "run python infra/k8s/capacity.py"
    xml.dom.minidom.parseString(svg)
    assert "capacity.svg" in DOC.read_text()


def test_the_inputs_are_the_census_of_the_readme() -> None:
    capacity = model()
    readme = (ROOT / "README.md").read_text()
    census = re.search(r"Cores used during HTTP throughput runs: (.*)", readme)
    assert census, "README Performance prints the census"
    cores = dict(
        (name, float(value)) for name, value in re.findall(r"([\w.-]+) (\d+\.\d+)", census.group(1))
    )
    assert capacity.HTTP_CORES["ingest_gateway"][0] == cores["ingest_gateway"]
    assert capacity.HTTP_CORES["writer"][0] == round(cores["writer-1"] + cores["writer"], 2)
    assert capacity.HTTP_CORES["InfluxDB"][0] == cores["influxd"]
    assert capacity.HTTP_CORES["RabbitMQ"][0] == cores["beam.smp"]
    door = re.search(r"HTTP door \(202s\) during the throughput runs: ([\d,]+) readings/s", readme)
    assert door and int(door.group(1).replace(",", "")) == capacity.HTTP_DOOR_RATE
    assert f"{capacity.HTTP_STORED_RATE:,}" in readme


def test_the_model_scales_linearly_above_the_fixed_floor() -> None:
    capacity = model()
    small, large = capacity.plan(100_000), capacity.plan(1_000_000)
    assert (
        abs((large.total - capacity.FIXED_CORES) - 10 * (small.total - capacity.FIXED_CORES)) < 1e-6
    )
    assert large.influx_instances == 5 and small.influx_instances == 1
    assert small.nodes >= 3
