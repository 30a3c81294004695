"""The training command line: every flag that `scripts/train.py --help` prints parses as printed (the `--no_*`
switches and the dash spellings included), and a tab delimiter can be written `\\t` or `tab`."""

import argparse
import dataclasses

import pytest
from hybrid_rearec.hybrid.config import CONFIG_CLASSES, build_parser, parse_configs
from hybrid_rearec.hybrid.errors import ConfigError

FIELDS = {field.name: field for cls in CONFIG_CLASSES for field in dataclasses.fields(cls)}
# Valid values for keys whose default is unset (None) or whose checks need a particular value.
SAMPLES = {
    "ema_decay": "0.999",
    "inference_steps": "0",
    "max_grad_norm": "1.0",
    "valid_time": "10",
    "test_time": "20",
    "resume": "runs/x/checkpoints/step-1",
    "delimiter": ";",
    "cold_selection": "newest",  # 'random' needs --split cold_items as well (refused alone on purpose)
}

NEEDS = {  # keys refused alone: what they need beside them
    "valid_time": ["--split", "global_time", "--test_time", "20"],
    "test_time": ["--split", "global_time", "--valid_time", "10"],
}


def configs(argv: list[str]) -> dict:
    """The parsed values of every key, flat."""
    return {key: value for config in parse_configs(argv) for key, value in dataclasses.asdict(config).items()}


def sample(action: argparse.Action) -> str:
    if action.dest in SAMPLES:
        return SAMPLES[action.dest]
    if action.choices:
        return str([choice for choice in action.choices if choice is not None][-1])
    default = FIELDS[action.dest].default
    if isinstance(default, bool):
        return str(not default).lower()
    return {int: "1", float: "0.5"}.get(action.type, "x") if default is None else str(default)


def options() -> list[tuple[str, argparse.Action]]:
    parser = build_parser()
    return [(option, action) for action in parser._actions for option in action.option_strings if action.dest != "help"]


def test_the_help_lists_the_switches_and_dash_spellings_of_the_issue():
    printed = {option for option, _ in options()}
    assert {"--no_progress", "--no_split_invariant_dropout", "--data-format", "--hidden-size"} <= printed


@pytest.mark.parametrize("option,action", options(), ids=[option for option, _ in options()])
def test_every_flag_of_the_help_parses_as_printed(option, action):
    if action.dest == "config":
        return  # its value is a file, tested in test_config.py
    if action.nargs == 0:  # a switch: --no_progress, --exclude_history-style store actions
        assert configs([option])[action.dest] == action.const
        return
    value, needs = sample(action), NEEDS.get(action.dest, [])
    parsed = configs([option, value, *needs])[action.dest]
    assert parsed == configs([f"--{action.dest}", value, *needs])[action.dest]  # the dash spelling: the same key
    if action.nargs == "?":  # a bool: --progress alone, or with a value
        assert configs([option])[action.dest] is True and parsed == (value == "true")


def test_the_issue_flags_reach_the_configs():
    values = configs(["--no_progress", "--no_split_invariant_dropout", "--data-format", "csv", "--hidden-size", "32"])
    assert values["progress"] is False and values["split_invariant_dropout"] is False
    assert values["data_format"] == "csv" and values["hidden_size"] == 32


def test_unknown_and_abbreviated_flags_are_still_refused():
    for flag, hint in (("--no_hidden_size", "hidden_size"), ("--hidden", "hidden_size"), ("--learning-rat", "")):
        with pytest.raises(ConfigError, match=rf"unknown config key '{flag[2:]}'.*{hint}"):
            parse_configs([flag, "1"])


@pytest.mark.parametrize("written", ["\\t", "tab", "TAB", "\t"])
def test_a_tab_delimiter_can_be_written_as_backslash_t_or_tab(written, tmp_path):
    assert configs(["--delimiter", written])["delimiter"] == "\t"
    preset = tmp_path / "p.yaml"
    preset.write_text(f"delimiter: '{written}'\n")
    assert configs(["--config", str(preset)])["delimiter"] == "\t"
    assert configs(["--delimiter", ";"])["delimiter"] == ";"
