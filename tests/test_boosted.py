"""Boosted LeNet-4 end to end (experiments/boosted.py) on a small budget: net 1 from the grid's
run folder, nets 2 and 3 trained on their filtered sets, the combination recorded; a second call
finds them done, and a set that would differ from the one a run started on is refused."""

from __future__ import annotations

import json

from click.testing import CliRunner

from experiments import boosted
from experiments.grid import train_runs

BUDGET = ["--epochs", "1", "--train-size", "200"]


def test_nets_2_and_3_train_on_their_sets_and_the_sum_is_recorded(tmp_path, mnist):
    runner = CliRunner()
    missing = runner.invoke(boosted.main, ["--seed", "0", "--out", str(tmp_path), *BUDGET])
    assert missing.exit_code != 0 and "net 1 of boosted LeNet-4 seed 0" in missing.output
    assert "Traceback" not in missing.output

    train_runs(boosted.net_config(0, 1, 1, 200), [0], tmp_path / "runs", mnist, "net_lenet4")
    first = runner.invoke(boosted.main, ["--seed", "0", "--out", str(tmp_path), *BUDGET])
    assert first.exit_code == 0, first.output
    row = json.loads((tmp_path / "fig9" / "boosted.json").read_text())["rows"]["net_lenet4"]["0"]
    assert len(row["nets"]) == 3 and row["net_test_errors"] == row["recorded_net_test_errors"]
    assert 1.0 <= row["nets_called"] <= 3.0 and 0 <= row["test_error"] <= 100
    sets = {}
    for net in (2, 3):
        folder = tmp_path / "fig9" / "boosted" / "net_lenet4" / boosted.net_config(0, net, 1, 200).digest()
        assert (folder / "done").is_file()
        sets[net] = json.loads((folder / "training_set.json").read_text())
        assert sets[net]["size"] == 200
    assert sets[2]["net1_right"] == 100 or abs(sets[2]["net1_right"] - 100) < 30  # a fair coin per pattern
    assert sets[3]["first_candidate"] > sets[2]["last_candidate"]  # net 3's patterns are new

    again = runner.invoke(boosted.main, ["--seed", "0", "--out", str(tmp_path), *BUDGET])
    assert again.exit_code == 0 and json.loads((tmp_path / "fig9" / "boosted.json").read_text())["rows"]["net_lenet4"]["0"] == row

    net3 = tmp_path / "fig9" / "boosted" / "net_lenet4" / boosted.net_config(0, 3, 1, 200).digest()
    (net3 / "done").unlink()  # an unfinished net 3 whose recorded set is not the one rebuilt now
    (net3 / "training_set.json").write_text(json.dumps({**sets[3], "sha256": "0" * 64}))
    refused = runner.invoke(boosted.main, ["--seed", "0", "--out", str(tmp_path), *BUDGET])
    assert refused.exit_code != 0 and "differs from the one this run started on" in refused.output
    assert "Traceback" not in refused.output
