"""`python -m infra.local`: its options (--usergroup, --param, --env), the new scenario steps, a quiet terminal."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import pytest

from infra.local.__main__ import OptionError, lambda_output_to, main, parse_env, parse_params, parse_usergroups
from infra.local.scenario import Click, FireSchedule, ScenarioError, Slash, load
from infra.local.stack import quiet_library_warnings

METRICS_WARNING = (
    "No application metrics to publish. The cold-start metric may be published if enabled. "
    "If application metrics should never be empty, consider using 'raise_on_empty_metrics'"
)


def scenario(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def test_usergroups_are_group_ids_with_their_members() -> None:
    assert parse_usergroups(["S0ML=U0ALICE,U0BOB", "S0ADMINS=W0CAROL", "S0EMPTY="]) == {
        "S0ML": ["U0ALICE", "U0BOB"],
        "S0ADMINS": ["W0CAROL"],
        "S0EMPTY": [],
    }


@pytest.mark.parametrize("bad", ["S0ML", "ml=U1", "S0ML=alice", "S0ML=U1,,U2", "=U1"])
def test_a_usergroup_that_is_not_ids_is_refused(bad: str) -> None:
    with pytest.raises(OptionError, match="--usergroup takes"):
        parse_usergroups([bad])


def test_params_are_checked_against_the_template() -> None:
    assert parse_params(["AllowedChannels=C1,C2", "Admins=U0ALICE"]) == {
        "AllowedChannels": "C1,C2",
        "Admins": "U0ALICE",
    }
    with pytest.raises(OptionError, match="no parameter 'AllowedChannel'"):
        parse_params(["AllowedChannel=C1"])
    with pytest.raises(OptionError, match="AllowedPattern"):
        parse_params(["AllowedChannels=#general"])
    with pytest.raises(OptionError, match="--param takes"):
        parse_params(["AllowedChannels"])


def test_env_takes_spotter_settings_only() -> None:
    assert parse_env(["SPOTTER_ALLOWED_CHANNELS=C1", "SPOTTER_ADMINS="]) == {
        "SPOTTER_ALLOWED_CHANNELS": "C1",
        "SPOTTER_ADMINS": "",
    }
    with pytest.raises(OptionError, match="--env takes"):
        parse_env(["AWS_REGION=eu-west-1"])


def test_a_bad_option_stops_the_run_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = scenario(tmp_path, "- sleep: 0\n")
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # main() hands stdout to the Lambdas' output: undone after

    code = main(["run", "--trainer", "standin", "--param", "DownloadLinkSeconds=5", str(path)])

    assert code == 2
    assert "DownloadLinkSeconds=5 is below its MinValue 60" in capsys.readouterr().err


def test_the_usage_text_shows_the_steps(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])

    usage = capsys.readouterr().out
    for shape in ("click: {button: cancel|logs|download", "fire_schedule: all", "[retry: N]", "--usergroup", "--param"):
        assert shape in usage


def test_new_steps_load_with_their_options(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        '- slash: "/train shapes yolov8n"\n'
        "  retry: 2\n"
        "- click: {button: cancel, job: last, user: U0BOB, channel: C0OTHER, double: true}\n"
        "- click: {button: download}\n"
        "- fire_schedule: all\n"
        "- fire_schedule: nightly-shapes\n",
    )

    steps = load(path)

    assert isinstance(steps[0], Slash) and steps[0].retry == 2
    assert isinstance(steps[1], Click)
    assert steps[1].click.model_dump() == {
        "button": "cancel",
        "job": "last",
        "user": "U0BOB",
        "channel": "C0OTHER",
        "double": True,
    }
    assert isinstance(steps[2], Click)
    assert (steps[2].click.job, steps[2].click.channel, steps[2].click.double) == ("last", None, False)
    assert [s.fire_schedule for s in steps[3:] if isinstance(s, FireSchedule)] == ["all", "nightly-shapes"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('- slash: "/train x"\n  signature: replay\n  retry: 1\n', "`retry` needs `signature: valid`"),
        ('- slash: "/train x"\n  retry: -1\n', "retry: Input should be greater than or equal to 0"),
        ("- click: {button: stop}\n", "click.button"),
        ("- click: {button: cancel, triple: true}\n", "click.triple"),
        ("- fire_schedule: ''\n", "fire_schedule"),
        ("- fire_schedule: 'a b'\n", "fire_schedule"),
    ],
)
def test_bad_new_steps_are_refused_before_the_run(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load(scenario(tmp_path, text))


def test_lambda_output_goes_to_the_log_not_the_terminal(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "lambda.log"
    with log.open("w") as cloudwatch, lambda_output_to(cloudwatch):
        print('{"level": "INFO", "message": "job queued"}')
        logging.getLogger("urllib3.connectionpool").warning("Connection pool is full")
        warnings.warn("a library's warning", UserWarning, stacklevel=1)

    terminal = capfd.readouterr()
    assert terminal.out == "" and terminal.err == ""
    written = log.read_text()
    assert "job queued" in written and "Connection pool is full" in written and "a library's warning" in written
    assert sys.stdout is not cloudwatch


def test_the_stack_silences_powertools_empty_metrics_warning_only() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_library_warnings()
        warnings.warn(METRICS_WARNING, UserWarning, stacklevel=1)
        warnings.warn(
            "No application metrics to publish, said as a DeprecationWarning", DeprecationWarning, stacklevel=1
        )
        warnings.warn("another library warning", UserWarning, stacklevel=1)

    assert [str(w.message) for w in caught] == [
        "No application metrics to publish, said as a DeprecationWarning",
        "another library warning",
    ]
