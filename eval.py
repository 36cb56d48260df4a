"""Evaluate a DeepSpeech2 checkpoint: corpus-level WER and CER per manifest.

usage: python eval.py --checkpoint CKPT [--manifests A.csv,B.json] [--decode.*=...] [--key=value ...]
  e.g. python eval.py --pretrain_ckpt outputs/checkpoints/DeepSpeech-30_42.ckpt
       python eval.py --checkpoint CKPT --decode.method=beam --decode.lm_path=lm.arpa \
           --decode.alpha=0.8 --decode.beta=1.5
       python eval.py --checkpoint DeepSpeech.ckpt \
           --manifests=data/libri_test_clean_manifest.csv,data/libri_test_other_manifest.csv
       python eval.py --checkpoint DeepSpeech.ckpt --manifests='["/data/a,b/test.csv"]'
Decoding: greedy by default; with --decode.method=beam the beam search (with the LM of
--decode.lm_path and the hotwords of --decode.hotwords='[NEW YORK, KUBERNETES]') and greedy are
both reported, from one network pass; summary.json records the decoder's settings.
Writes <output_dir>/<manifest name>.txt (every REF/HYP pair) and summary.json and prints their
path; results of an earlier run in output_dir are first moved to output_dir/previous/<time>/.
The network size is read from the checkpoint (a zoo 1024 x 5 checkpoint needs no config edit).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src.cli import check_output_dir, main  # noqa: E402  (after the path fix above)
from src.errors import UserError  # noqa: E402


def run(cfg):
    manifests = cfg.eval.manifests
    if not manifests:
        raise UserError("no manifest to evaluate: set --eval.manifests")
    twice = sorted({m for m in manifests if manifests.count(m) > 1})
    if twice:
        raise UserError(f"manifest given more than once: {', '.join(twice)}")
    out = check_output_dir(cfg.eval.output_dir, "eval.output_dir")
    from src.checkpoints import network_from_checkpoint
    from src.context import setup_context
    from src.decoder import decoder_pools, decoder_settings
    from src.deepspeech2 import InferenceNet
    from src.evaluate import (
        evaluate_manifest,
        rates_text,
        result_names,
        set_aside_previous,
        write_results,
        write_summary,
    )
    from src.text import make_encoder
    encoder = make_encoder(cfg)
    setup_context(cfg)
    net = InferenceNet(network_from_checkpoint(cfg, cfg.eval.checkpoint))
    for manifest in manifests:
        if not os.path.isfile(manifest):
            raise UserError(f"manifest not found: {manifest} (--manifests is split at commas; a "
                            "path holding a comma goes in a YAML list: "
                            "--manifests='[\"/data/a,b/test.csv\"]')")
    set_aside_previous(out)
    summary = {"checkpoint": cfg.eval.checkpoint, "decoder": decoder_settings(cfg.decode),
               "results": {}}
    pools = decoder_pools(cfg.decode, encoder.labels, with_greedy=True)
    try:
        for name, manifest in zip(result_names(manifests), manifests):
            rates, pairs, skipped = evaluate_manifest(net, manifest, cfg, encoder, pools, desc=name)
            summary["results"][name] = {"manifest": manifest,
                                        **write_results(out, name, rates, pairs, skipped)}
            note = f"; skipped: {skipped.text()} (see summary.json)" if skipped else ""
            count = next(iter(rates.values())).utterances
            print(f"{name}: {rates_text(rates)}  ({count} utterances{note})")
    finally:
        for pool in pools:
            pool.close()
    path = write_summary(out, summary)
    print(f"results: {out} (summary: {path})")


if __name__ == "__main__":
    sys.exit(main("eval", __doc__, run))
