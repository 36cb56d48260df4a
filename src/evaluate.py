"""Evaluation of an inference network over manifests with one or more CTC decoders (eval.py and
per-epoch validation); the network runs once per batch whatever the number of decoders."""
import json
import os
import shutil
import time

from src.dataset import load_utterances
from src.inference import recognize
from src.metrics import ErrorRate
from src.progress import progress


def evaluate_manifest(infer_net, manifest, cfg, encoder, pools, desc="eval", rank=0,
                      group_size=1):
    """Decode every usable utterance of `manifest` with each DecoderPool (src.decoder); the
    network's train/eval mode is restored.

    Returns ({decoder name: ErrorRate}, [(audio, reference, {decoder name: hypothesis})],
    Report of skipped utterances). Audio that fails while decoding is skipped, counted and
    named in the report like a bad header. With group_size > 1 this rank decodes every
    group_size-th utterance from `rank` on and returns its shard's ErrorRates (sum them with
    ErrorRate.all_reduce for the whole manifest).
    """
    utts, report = load_utterances(manifest, cfg.features, encoder, ctc_filter=False)
    utts = utts[rank::group_size]
    rates, pairs = {p.name: ErrorRate() for p in pools}, []
    bar = progress(total=len(utts), desc=desc, unit="utt", leave=False)
    results = recognize(infer_net, [u.audio for u in utts], [u.frames for u in utts], cfg, pools,
                        bar=bar)
    try:
        for utt, hyps in skip_failures(results, utts, report):
            texts = {p.name: h.text for p, h in zip(pools, hyps)}
            for name, text in texts.items():
                rates[name].update(utt.text, text)
            pairs.append((utt.audio, utt.text, texts))
    finally:
        results.close()  # its eval_mode (src.inference) puts the modes back now
    bar.close()
    return rates, pairs, report


def skip_failures(results, utts, report):
    """(index, result, error or None) per utterance of `utts` (src.inference's streams) ->
    (utterance, result) of those that worked; a failure (audio unreadable past its header) is
    counted in `report` and named in report.files, as load_utterances does for bad headers."""
    for i, result, err in results:
        if err is None:
            yield utts[i], result
        else:
            report["unreadable audio"] += 1
            report.files.append(err)


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
    """<output_dir>/<name with / as __>.txt with every reference and hypothesis ("HYP: " of
    the first decoder, then "HYP (<name>): " of the others); returns the summary entry: the
    first decoder's WER, CER and counts, every decoder's under "decoders", the pairs file, and
    the utterances skipped."""
    pairs_file = name.replace("/", "__") + ".txt"
    with open(os.path.join(output_dir, pairs_file), "w", encoding="utf-8") as f:
        for audio, ref, hyps in pairs:
            (_, first), *others = hyps.items()
            lines = "".join(f"HYP ({decoder}): {hyp}\n" for decoder, hyp in others)
            f.write(f"{audio}\nREF: {ref}\nHYP: {first}\n{lines}\n")
    first = next(iter(rates.values()))
    return {**first.summary(), "decoders": {k: r.summary() for k, r in rates.items()},
            "pairs_file": pairs_file, "skipped": dict(report), "skipped_files": report.files}


def rates_text(rates):
    """'WER 12.00%  CER 4.00%' for one decoder, or 'beam+lm: WER ..  |  greedy: WER ..'."""
    texts = {k: f"WER {r.wer:.2f}%  CER {r.cer:.2f}%" for k, r in rates.items()}
    if len(texts) == 1:
        return next(iter(texts.values()))
    return "  |  ".join(f"{k}: {t}" for k, t in texts.items())


def write_summary(output_dir, summary):
    path = os.path.join(output_dir, "summary.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return path
