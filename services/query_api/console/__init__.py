"""The web console at ``/console``: static files served by the query API (no CDN at run time;
the chart library, uPlot, comes from npm through ``web/package-lock.json``)."""
