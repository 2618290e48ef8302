"""Score an associative-recall checkpoint on its held-out set, split by where the query's key sits.

    python recipes/study/recall_eval.py CHECKPOINT [--chunk-size M] [--batch-size 64] [--json OUT]

Regenerates the held-out examples from the checkpoint's own task settings (--seq-len, --vocab-size,
--num-train, --num-test, --seed), runs the model on ``ex[:-1]`` and prints one JSON object:
accuracy (%) on the last token over all examples, over those whose query key last occurred inside
the query's attention chunk, and over those where it occurred before it
(``fairseq_focus/data/recall_split.py``), each next to the "most frequent value" rule on the same
examples. M is the model's --chunk-size (Focus/MEGA archs); give --chunk-size for models without one
(the transformer attends to everything: its split uses the Focus models' M = 32 for comparison).
"""
import argparse
import json
import sys
from pathlib import Path

import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--chunk-size", type=int, default=None, help="M; default: the model's --chunk-size")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        print(f"error: checkpoint {args.checkpoint} does not exist", file=sys.stderr)
        return 1
    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo))
    from fairseq import checkpoint_utils, utils
    from fairseq_focus.data.recall_split import inside_query_chunk, most_frequent_value, split_accuracy

    utils.import_user_module(argparse.Namespace(user_dir=str(repo / "fairseq_focus")))
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(args.checkpoint)])
    if cfg.task._name != "associative_recall":
        print(f"error: {args.checkpoint} was trained on task {cfg.task._name}, not associative_recall", file=sys.stderr)
        return 1
    model = models[0].eval()
    chunk = args.chunk_size or getattr(cfg.model, "chunk_size", None)
    if chunk is None:
        print("error: the model has no --chunk-size; pass --chunk-size", file=sys.stderr)
        return 1
    held_out = torch.from_numpy(task.examples()[1]).long() + task.dictionary.nspecial  # (N, 2P + 3)
    inputs, target = held_out[:, :-1], held_out[:, -1]
    predicted = []
    with torch.no_grad():
        for start in range(0, len(inputs), args.batch_size):
            logits = model(inputs[start:start + args.batch_size])[0]  # (b, T, V)
            predicted.append(logits[:, -1].argmax(dim=-1))
    predicted = torch.cat(predicted)
    inside = inside_query_chunk(inputs, chunk)
    result = {"checkpoint": str(args.checkpoint), "seq_len": cfg.task.seq_len, "vocab_size": cfg.task.vocab_size,
              "chunk_size": chunk, "model": split_accuracy(predicted.eq(target), inside),
              "most_frequent_value": split_accuracy(most_frequent_value(inputs).eq(target), inside)}
    text = json.dumps(result)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
