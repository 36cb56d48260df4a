"""Greedy evaluation of an inference network over a manifest (shared by eval.py and train.py)."""
import json
import os

from tqdm import tqdm

from src.dataset import BatchSource, create_dataset, iterate, load_utterances
from src.decoder import ErrorRate, greedy_decode


def evaluate_manifest(infer_net, manifest, cfg, encoder, batch_size, desc="eval"):
    """Decode every utterance of `manifest`.

    Returns (ErrorRate, [(audio, reference, hypothesis)], Report of skipped utterances).
    """
    utts, report = load_utterances(manifest, cfg, encoder, ctc_filter=False)
    source = BatchSource(utts, cfg, batch_size, cfg.data.num_buckets)
    data = create_dataset(source, cfg.data.num_parallel_workers)
    infer_net.set_train(False)
    rates, pairs = ErrorRate(), []
    for step, (inputs, lengths, _, _) in enumerate(tqdm(
            iterate(data), total=len(source), desc=desc,
            unit="batch", leave=False)):
        log_probs, out_lengths = infer_net(inputs, lengths)  # (T', B, C), (B,)
        hyps = greedy_decode(log_probs.asnumpy(), out_lengths.asnumpy(), encoder.labels)
        for utt, hyp in zip(source.batch_utterances(step), hyps):
            rates.update(utt.text, hyp)
            pairs.append((utt.audio, utt.text, hyp))
    return rates, pairs, report


def write_results(output_dir, name, rates, pairs, report):
    """<output_dir>/<name>.txt with every reference/hypothesis pair; returns the summary dict
    (WER, CER, counts, and the utterances skipped as unreadable, which WER/CER do not cover)."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, f"{name}.txt"), "w", encoding="utf-8") as f:
        for audio, ref, hyp in pairs:
            f.write(f"{audio}\nREF: {ref}\nHYP: {hyp}\n\n")
    return {**rates.summary(), "skipped": dict(report), "skipped_files": report.files}


def write_summary(output_dir, summary):
    path = os.path.join(output_dir, "summary.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return path
