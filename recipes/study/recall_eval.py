"""Score an associative-recall checkpoint on held-out examples, split by where the query's key sits.

    python recipes/study/recall_eval.py CHECKPOINT [--seq-len L] [--num-test N] [--chunk-size M]
                                        [--batch-size 64] [--json OUT]

Regenerates the held-out examples from the checkpoint's own task settings (--seq-len, --vocab-size,
--num-train, --num-test, --seed, and the study options --align-query-chunk / --study-include-answer),
builds each input as training did (filler, answer), runs the model and prints one JSON object:
accuracy (%) at the scored position (the query key) over all examples, over those whose query key
last occurred inside the query's attention chunk, and over those where it occurred before it
(``fairseq_focus/data/recall_split.py``; with --align-query-chunk the chunks end at the query, so
"inside" means among the last M input tokens), each next to the "most frequent value" rule on the
same examples. M is the task's --split-chunk-size, else the model's --chunk-size; give --chunk-size
for models without one (the transformer attends to everything).

--seq-len scores the checkpoint on examples of another length without retraining (--num-test: another
number of them): only the task's length changes; the model keeps its own --bin-size, --chunk-size and
global kernel (--hyper-kernel-size), which the JSON reports next to the length it was trained at. The
held-out examples are those the task generates at that length (after --num-train training examples,
disjoint from them), the filler is recomputed for it.
"""
import argparse
import json
import sys
from pathlib import Path

import torch


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--seq-len", type=int, default=None,
                        help="L of the held-out examples; default: the checkpoint's")
    parser.add_argument("--num-test", type=int, default=None, help="held-out examples; default: the checkpoint's")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="M of the split; default: the task's --split-chunk-size, else the model's --chunk-size")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    return parser.parse_args(argv)


def check_args(args) -> str:
    """A one-line reason the arguments cannot work, or ''."""
    if not args.checkpoint.is_file():
        return f"checkpoint {args.checkpoint} does not exist"
    if args.seq_len is not None and args.seq_len < 2:
        return f"--seq-len must be at least 2 (one key-value pair), got {args.seq_len}"
    if args.num_test is not None and args.num_test < 1:
        return f"--num-test must be positive, got {args.num_test}"
    return ""


def score(model, task, batch_size: int):
    """(correct, inputs, answers) over the task's held-out split: the model's hit at the scored position,
    ex[:-1] without filler (N, 2P + 2) and v_q (N,)."""
    from fairseq_focus.tasks.associative_recall import last_token_correct
    task.load_dataset("test")
    dataset = task.dataset("test")
    correct, inputs, answers = [], [], []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = dataset.collater([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            logits = model(**batch["net_input"])[0]  # (b, T, V)
            correct.append(last_token_correct(logits, batch["target"], task.dictionary.pad()))
            view, answer = task.recall_view(batch["net_input"]["src_tokens"], batch["target"])
            inputs.append(view)
            answers.append(answer)
    return torch.cat(correct), torch.cat(inputs), torch.cat(answers)


def model_settings(cfg, model) -> dict:
    """The model's own sizes, as the checkpoint built them (None where the model has no such setting)."""
    from fairseq_focus.tasks.associative_recall import model_chunk_size
    node = cfg.model
    get = (lambda name: node.get(name)) if hasattr(node, "get") else (lambda name: getattr(node, name, None))
    return {"arch": get("arch") or get("_name"), "focus_filter": get("focus_filter"), "bin_size": get("bin_size"),
            "hyper_kernel_size": get("hyper_kernel_size"), "model_chunk_size": model_chunk_size(model)}


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo))
    from fairseq import checkpoint_utils, utils
    from fairseq_focus.data.recall_split import inside_query_chunk, most_frequent_value, split_accuracy

    utils.import_user_module(argparse.Namespace(user_dir=str(repo / "fairseq_focus")))
    trained = checkpoint_utils.load_checkpoint_to_cpu(str(args.checkpoint))["cfg"]
    if trained.task._name != "associative_recall":
        print(f"error: {args.checkpoint} was trained on task {trained.task._name}, not associative_recall",
              file=sys.stderr)
        return 1
    overrides = {k: v for k, v in (("seq_len", args.seq_len), ("num_test", args.num_test)) if v is not None}
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(args.checkpoint)], arg_overrides={"task": overrides} if overrides else None)
    model = models[0].eval()
    settings = model_settings(cfg, model)
    chunk = args.chunk_size or task.cfg.split_chunk_size or settings["model_chunk_size"]
    if chunk is None:
        print("error: the model has no --chunk-size; pass --chunk-size", file=sys.stderr)
        return 1
    correct, inputs, answers = score(model, task, args.batch_size)
    inside = inside_query_chunk(inputs, chunk, task.fill_length())
    result = {"checkpoint": str(args.checkpoint), "seq_len": task.cfg.seq_len,
              "trained_seq_len": trained.task.seq_len, "num_test": task.cfg.num_test,
              "vocab_size": task.cfg.vocab_size, "chunk_size": chunk, **settings,
              "align_query_chunk": bool(task.cfg.align_query_chunk), "fill": task.fill_length(),
              "study_include_answer": bool(task.cfg.study_include_answer),
              "model": split_accuracy(correct, inside),
              "most_frequent_value": split_accuracy(most_frequent_value(inputs).eq(answers), inside)}
    text = json.dumps(result)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
