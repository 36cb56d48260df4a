"""Evaluate a DeepSpeech2 checkpoint: greedy decoding, corpus-level WER and CER per manifest.

usage: python eval.py --checkpoint CKPT [--manifests A.csv,B.json] [--key=value ...]
  e.g. python eval.py --pretrain_ckpt outputs/checkpoints/DeepSpeech-30_42.ckpt
       python eval.py --checkpoint DeepSpeech.ckpt \
           --manifests=data/libri_test_clean_manifest.csv,data/libri_test_other_manifest.csv
Writes <output_dir>/<manifest name>.txt (every REF/HYP pair) and summary.json; prints their path.
The network size is read from the checkpoint (a zoo 1024 x 5 checkpoint needs no config edit).
"""
import os
import sys

from src.cli import fail, start


def main():
    cfg = start("eval")
    if cfg is None:
        print(__doc__)
        return
    from src.builders import CheckpointError, network_from_checkpoint, setup_context
    from src.dataset import ManifestError, make_encoder
    from src.deepspeech2 import InferenceNet
    from src.evaluate import evaluate_manifest, write_results, write_summary
    from src.features import AudioError
    if not cfg.eval.manifests:
        fail("eval", "no manifest to evaluate: set --eval.manifests")
    try:
        setup_context(cfg)
        net = InferenceNet(network_from_checkpoint(cfg, cfg.eval.checkpoint))
        encoder = make_encoder(cfg)
        summary = {}
        for manifest in cfg.eval.manifests:
            name = os.path.splitext(os.path.basename(manifest))[0]
            rates, pairs, skipped = evaluate_manifest(net, manifest, cfg, encoder,
                                                      cfg.data.batch_size, desc=name)
            summary[name] = write_results(cfg.eval.output_dir, name, rates, pairs, skipped)
            note = f"; skipped: {skipped.text()} (see summary.json)" if skipped else ""
            print(f"{name}: WER {rates.wer:.2f}%  CER {rates.cer:.2f}%  "
                  f"({rates.utterances} utterances{note})")
        path = write_summary(cfg.eval.output_dir, summary)
        print(f"results: {os.path.abspath(cfg.eval.output_dir)} (summary: {path})")
    except (CheckpointError, ManifestError, AudioError, ValueError) as err:
        fail("eval", err)


if __name__ == "__main__":
    sys.exit(main())
