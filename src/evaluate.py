"""Greedy evaluation of an inference network over manifests (eval.py and per-epoch validation)."""
import json
import os
import shutil
import time

from src.dataset import load_utterances
from src.inference import recognize
from src.metrics import ErrorRate
from src.progress import progress


def evaluate_manifest(infer_net, manifest, cfg, encoder, desc="eval", rank=0, group_size=1):
    """Decode every usable utterance of `manifest`; the network's train/eval mode is restored.

    Returns (ErrorRate, [(audio, reference, hypothesis)], Report of skipped utterances). Audio
    that fails while decoding is skipped, counted and named in the report like a bad header.
    With group_size > 1 this rank decodes every group_size-th utterance from `rank` on and
    returns its shard's ErrorRate (sum them with ErrorRate.all_reduce for the whole manifest).
    """
    utts, report = load_utterances(manifest, cfg, encoder, ctc_filter=False)
    utts = utts[rank::group_size]
    rates, pairs = ErrorRate(), []
    bar = progress(total=len(utts), desc=desc, unit="utt", leave=False)
    for i, hyp, err in recognize(infer_net, [u.audio for u in utts], [u.frames for u in utts],
                                 cfg, encoder.labels, bar=bar):
        if err is not None:
            report["unreadable audio"] += 1
            report.files.append(err)
            continue
        rates.update(utts[i].text, hyp)
        pairs.append((utts[i].audio, utts[i].text, hyp))
    bar.close()
    return rates, pairs, report


def result_names(manifests):
    """A distinct, readable name per manifest: its file name without extension, with as many
    parent folders as it takes to tell equal file names apart ("a/test", "b/test")."""
    parts = [os.path.splitext(os.path.abspath(m))[0].split(os.sep) for m in manifests]
    names = []
    for p in parts:
        depth = 1
        while depth < len(p) and sum(q[-depth:] == p[-depth:] for q in parts) > 1:
            depth += 1
        names.append("/".join(p[-depth:]))
    return names


def set_aside_previous(output_dir, log=print):
    """Move an earlier run's results (summary.json and the pair files it names) from output_dir
    into output_dir/previous/<time of that summary>/, so that no result is overwritten."""
    summary = os.path.join(output_dir, "summary.json")
    if not os.path.isfile(summary):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(os.path.getmtime(summary)))
    dest = os.path.join(output_dir, "previous", stamp)
    os.makedirs(dest, exist_ok=True)
    try:
        with open(summary, encoding="utf-8") as f:
            files = [entry.get("pairs_file") for entry in json.load(f)["results"].values()]
    except (OSError, ValueError, KeyError, AttributeError, TypeError):  # not ours: move it alone
        files = []
    for name in ["summary.json"] + [f for f in files if f]:
        path = os.path.join(output_dir, name)
        if os.path.isfile(path):
            shutil.move(path, os.path.join(dest, name))
    log(f"earlier results in {output_dir} moved to {dest}")
    return dest


def write_results(output_dir, name, rates, pairs, report):
    """<output_dir>/<name with / as __>.txt with every reference/hypothesis pair; returns the
    summary entry (WER, CER, counts, the pairs file, and the utterances skipped)."""
    pairs_file = name.replace("/", "__") + ".txt"
    with open(os.path.join(output_dir, pairs_file), "w", encoding="utf-8") as f:
        for audio, ref, hyp in pairs:
            f.write(f"{audio}\nREF: {ref}\nHYP: {hyp}\n\n")
    return {**rates.summary(), "pairs_file": pairs_file, "skipped": dict(report),
            "skipped_files": report.files}


def write_summary(output_dir, summary):
    path = os.path.join(output_dir, "summary.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return path
