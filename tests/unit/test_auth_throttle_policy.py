"""The throttle's waits: free failures, then doubling up to the cap; an address's window."""

from services.auth.security.throttle import Policy


def test_an_account_backs_off_exponentially_up_to_the_cap() -> None:
    account = Policy(free=5, window_s=900, backoff_s=15, max_wait_s=900)
    assert [account.wait(n) for n in range(1, 13)] == [
        0,
        0,
        0,
        0,
        15,
        30,
        60,
        120,
        240,
        480,
        900,
        900,
    ]
    assert account.wait(10_000) == 900


def test_an_address_waits_for_its_window_past_its_limit() -> None:
    address = Policy(free=100, window_s=900)
    assert address.wait(99) == 0
    assert address.wait(100) == 900
