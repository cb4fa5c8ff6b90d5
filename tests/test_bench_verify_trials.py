"""bench/verify_trials.py: the reproduction of #13 item 16 through the whole loop, and its bookkeeping."""

from __future__ import annotations

import pytest

from bench.verify_trials import main, one_trial, summarise


def test_a_first_cycle_while_the_fault_unfolds_still_ends_in_a_verified_recovery():
    # Seed 0 with the first cycle 40.3 s after the bad deploy: the agent rolls back at once, while the error rate
    # is still catching up with the bad pods (its short mean said 0.003). The old verifier read 0.15 at the first
    # reading, called it worse, rolled the bad image forward again and escalated.
    trial = one_trial(0, 40.3)

    assert trial["playbook"] == "rollback-deploy" and trial["fault_to_action"] == 40.3
    assert trial["state"] == "succeeded" and not trial["undone"], trial
    assert trial["verify_seconds"] < 120, "ended early once recovered, not after the whole window"


def test_summary_counts_states_and_takes_median_and_p90_over_the_recovered_trials():
    trials = [{"state": "succeeded", "fault_to_recovery": t, "verify_seconds": 90.0, "undone": False}
              for t in (100.0, 110.0, 120.0, 130.0)]
    trials += [{"state": "rolled_back", "verify_seconds": 15.0, "undone": True}, {"state": "no_action"}]
    summary = summarise(trials)
    assert summary["states"] == {"succeeded": 4, "rolled_back": 1, "no_action": 1}
    assert (summary["recovered"], summary["rolled_back"], summary["undone"]) == (4, 1, 1)
    assert summary["fault_to_recovery_median"] == 115.0 and summary["fault_to_recovery_p90"] == 130.0
    assert summary["verify_seconds_median"] == 90.0 and summary["verify_seconds_p90"] == 90.0


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--trials", "0"])
    assert info.value.code == 2 and "--trials >= 1" in capsys.readouterr().err
