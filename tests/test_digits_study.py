"""recipes/smnist/digits_study.py (issue 26): the log parser, the table and head-to-head lines, its
one-line errors, and one tiny run end to end through train.sh / eval.sh (slow)."""
import importlib.util
import json

import pytest

from helpers import REPO

SPEC = importlib.util.spec_from_file_location("digits_study", REPO / "recipes" / "smnist" / "digits_study.py")
study = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(study)

LOG = """x | INFO | fairseq_focus.models.focus_classifier | focus_classifier: 126280 parameters (0.13M), backbone=focus
x | INFO | train | epoch 001 | loss 2.1 | accuracy 30.5 | wps 1
x | INFO | valid | epoch 001 | valid on 'valid' subset | loss 2 | accuracy 40 | wps 2
x | INFO | train | epoch 002 | loss 1.1 | accuracy 90.25 | wps 1
x | INFO | valid | epoch 002 | valid on 'valid' subset | loss 1 | accuracy 85.5 | wps 2 | best_accuracy 85.5
x | INFO | fairseq_cli.train | done training in 12.5 seconds
"""


def _result(model, order, seed, acc):
    return {"run": study.run_name(model, order, seed), "model": model, "order": order, "seed": seed, "params": 100,
            "max_update": 2000, "test_accuracy": acc, "train_accuracy_by_epoch": [50.0, 99.0], "best_valid_accuracy": 90.0}


def test_parse_train_log():
    parsed = study.parse_train_log(LOG)
    assert parsed == {"params": 126280, "train_accuracy_by_epoch": [30.5, 90.25], "valid_accuracy_by_epoch": [40.0, 85.5],
                      "best_valid_accuracy": 85.5, "train_seconds": 12.5}
    with pytest.raises(study.StudyError, match="no 'focus_classifier: N parameters' line"):
        study.parse_train_log("nothing")


def test_table_and_head_to_head():
    results = [_result("focus", "sequential", 1, 98.0), _result("focus", "sequential", 2, 96.0),
               _result("mega", "sequential", 1, 97.0), _result("transformer", "sequential", 1, 98.5)]
    text = study.table(results)
    assert "| sequential | focus | 100 | 2000 | s1 98.00, s2 96.00 | 97.00 | 99.0, 99.0 | 90.0, 90.0 |" in text
    lines = study.head_to_head(results).splitlines()
    assert lines[0] == "sequential seed 1: focus 98.00 vs mega 97.00, transformer 98.50 (not below)"
    assert lines[1] == "sequential seed 2: focus 96.00 vs nothing yet"


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert study.main(["collect", "--work", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"error: no results in {tmp_path / 'results'}\n"
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "focus-sequential-seed1.json").write_text("{}")
    assert study.main(["run", "--work", str(tmp_path), "--model", "focus", "--order", "sequential", "--seed", "1"]) == 1
    assert "exists; remove it to run again" in capsys.readouterr().err


@pytest.mark.slow
def test_one_tiny_run_end_to_end(tmp_path, capsys):
    argv = ["run", "--work", str(tmp_path), "--model", "focus", "--order", "permuted", "--seed", "3", "--max-update", "3"]
    assert study.main(argv) == 0
    result = json.loads((tmp_path / "results" / "focus-permuted-seed3-u3.json").read_text())  # -u: not the study's budget
    assert result["params"] == 126280 and 0.0 <= result["test_accuracy"] <= 100.0  # the count in MODELS' comment
    assert "PERMUTE_SEED=1" in result["train_command"] and "--bidirectional-filter" in result["train_command"]
    assert result["train_command"].endswith("bash recipes/pixels_common/train.sh")
    assert "SUBSET=test" in result["eval_command"]
    assert "permuted with seed 1" in (tmp_path / "logs" / "focus-permuted-seed3-u3.log").read_text()
    assert "| permuted | focus (3 updates) | 126,280 | 3 | s3 " in study.table(study.load_results(tmp_path))
