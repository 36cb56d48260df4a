"""Find the LM weights for beam search: grid search of decode.alpha x decode.beta on a dev set.

usage: python tune_lm.py --checkpoint CKPT --decode.lm_path=LM.arpa [--manifest DEV.csv] \
           [--alpha_from=0 --alpha_to=3 --alpha_steps=7 --beta_from=0 --beta_to=3 \
            --beta_steps=7] [--decode.beam_width=128] [--key=value ...]
  e.g. python tune_lm.py --checkpoint outputs/checkpoints/DeepSpeech-10_83.ckpt \
           --decode.lm_path=outputs/lm/sample_train_3gram.arpa
The network runs once over the manifest (its outputs are cached in output_dir, so a second
grid re-decodes only; utterances it cannot read are counted and named); every pair is decoded
with the other decode.* settings (beam_width, hotwords) in data.num_parallel_workers processes.
Writes <output_dir>/grid.csv (alpha, beta, WER, CER), best.json and decode.yaml, a config file
with the best decoder for the other entry points:
  python eval.py --checkpoint CKPT --config_path outputs/tune_lm/decode.yaml
A best alpha or beta on the edge of the grid is pointed out, with a wider range to try.
Tune on a dev set, never on the test set you report.
"""
import json
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src.cli import check_output_dir, main  # noqa: E402  (after the path fix above)
from src.errors import UserError  # noqa: E402


def network_outputs(cfg, encoder, path):
    """Run the checkpoint's network over the manifest once and cache (references, outputs); the
    utterances skipped are counted and named on stderr."""
    from src.checkpoints import network_from_checkpoint
    from src.context import setup_context
    from src.dataset import load_utterances
    from src.deepspeech2 import InferenceNet
    from src.evaluate import skip_failures
    from src.inference import utterance_log_probs
    from src.lm_tuning import save_outputs
    from src.progress import progress
    t = cfg.tune_lm
    utts, report = load_utterances(t.manifest, cfg.features, encoder, ctc_filter=False)
    setup_context(cfg)
    net = InferenceNet(network_from_checkpoint(cfg, t.checkpoint))
    bar = progress(total=len(utts), desc="network", unit="utt")
    results = utterance_log_probs(net, [u.audio for u in utts], [u.frames for u in utts], cfg, bar)
    references, outputs = [], []
    for utt, probs in skip_failures(results, utts, report):
        references.append(utt.text)
        outputs.append(probs)
    bar.close()
    if report:
        print("\n  ".join([f"skipped: {report.text()}", *report.files]), file=sys.stderr)
    if not outputs:
        raise UserError(f"no usable utterance in {t.manifest}")
    save_outputs(path, references, outputs)
    print(f"network outputs of {len(outputs)} utterances cached in {path}")


def write_best(out, settings, rates, results, t):
    """best.json (the best decoder's settings, its figures, the data) and decode.yaml (its
    decode section, for --config_path)."""
    best = {**settings, "wer": rates.wer, "cer": rates.cer, "utterances": rates.utterances,
            "manifest": t.manifest, "checkpoint": t.checkpoint}
    with open(os.path.join(out, "best.json"), "w", encoding="utf-8") as f:
        json.dump(best, f, indent=2)
    with open(os.path.join(out, "decode.yaml"), "w", encoding="utf-8") as f:
        f.write(f"# written by tune_lm.py: best of {len(results)} pairs on {t.manifest}\n")
        yaml.safe_dump({"decode": settings}, f, sort_keys=False)


def run(cfg):
    t = cfg.tune_lm
    if not t.checkpoint:
        raise UserError("no checkpoint: python tune_lm.py --checkpoint CKPT "
                        "--decode.lm_path=LM.arpa")
    if not cfg.decode.lm_path:
        raise UserError("no language model to tune: set --decode.lm_path (build one with "
                        "python data_prep/build_lm.py)")
    for what, path in (("checkpoint", t.checkpoint), ("manifest", t.manifest)):
        if not os.path.isfile(path):
            raise UserError(f"{what} not found: {path}")
    out = check_output_dir(t.output_dir, "tune_lm.output_dir")
    from easydict import EasyDict

    from src.decoder import BeamDecoder, decoder_settings
    from src.lm_tuning import best_of, cache_key, edge_note, grid, load_outputs, search, write_grid
    from src.text import make_encoder
    pairs, decode = grid(t), EasyDict(cfg.decode, method=BeamDecoder.method)
    encoder = make_encoder(cfg)
    cached = os.path.join(out, f"outputs-{cache_key(t.checkpoint, t.manifest, cfg)}.npz")
    if os.path.isfile(cached):
        print(f"network outputs: {cached} (cached)")
    else:
        network_outputs(cfg, encoder, cached)
    results = search(*load_outputs(cached), encoder.labels, decode, pairs,
                     cfg.data.num_parallel_workers)
    write_grid(os.path.join(out, "grid.csv"), results)
    alpha, beta, rates = best_of(results)
    write_best(out, {**decoder_settings(decode), "alpha": alpha, "beta": beta}, rates, results, t)
    print(f"best: alpha {alpha}, beta {beta}: WER {rates.wer:.2f}%  CER {rates.cer:.2f}% "
          f"({rates.utterances} utterances)")
    note = edge_note(t, alpha, beta)
    if note:
        print(note)
    print(f"results: {out} (grid.csv, best.json; use --config_path "
          f"{os.path.join(out, 'decode.yaml')} or --decode.alpha={alpha} --decode.beta={beta})")


if __name__ == "__main__":
    sys.exit(main("tune_lm", __doc__, run))
