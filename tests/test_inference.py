"""The one inference path: batched, padded recognition equals each file run alone; failures are
per file; the caller's network keeps its train/eval mode; decodes in flight come back in order."""
import numpy as np

from test_end_to_end import head


def test_batched_recognition_equals_each_file_alone_and_skips_bad_files(ms_context, sample_data,
                                                                        tmp_path):
    ms = ms_context
    from src.config import load_config
    from src.decoder import decoder_pools, greedy_decode
    from src.deepspeech2 import InferenceNet, build_network
    from src.evaluate import evaluate_manifest
    from src.features import featurize
    from src.inference import recognize
    from src.manifest import read_manifest
    from src.text import make_encoder

    manifest = head(sample_data / "libri_test_clean_manifest.csv", tmp_path / "t.csv", 7)
    cfg = load_config(["--hidden_size=16", "--num_layers=1", "--batch_size=3",
                       "--num_buckets=2"])
    ms.set_seed(5)
    net = InferenceNet(build_network(cfg))
    encoder = make_encoder(cfg)
    paths = [e.audio for e in read_manifest(manifest)]
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    paths.insert(2, str(tmp_path / "bad.wav"))
    frames = [featurize(p, cfg.features).shape[1] if "bad" not in p else 100 for p in paths]

    net.set_train(True)
    moving = {p.name: p.asnumpy().copy() for p in net.get_parameters() if "moving" in p.name}
    greedy = decoder_pools(cfg.decode, encoder.labels)  # the default: greedy
    got = {i: (hyps and hyps[0].text, err)
           for i, hyps, err in recognize(net, paths, frames, cfg, greedy)}
    assert net.training  # restored
    assert all(np.array_equal(moving[p.name], p.asnumpy()) for p in net.get_parameters()
               if "moving" in p.name)
    assert sorted(got) == list(range(len(paths)))
    assert got[2][0] is None and "cannot read audio" in got[2][1] and "bad.wav" in got[2][1]

    net.set_train(False)
    for i, path in enumerate(paths):
        if i == 2:
            continue
        spec = featurize(path, cfg.features)[None, None]  # (1, 1, F, T) at its own length
        probs, lengths = net(ms.Tensor(spec), ms.Tensor(np.array([spec.shape[-1]], np.int32)))
        alone = greedy_decode(probs.asnumpy(), lengths.asnumpy(), encoder.labels)[0]
        assert got[i] == (alone, None), path

    net.set_train(True)
    rates, pairs, report = evaluate_manifest(net, manifest, cfg, encoder, greedy)
    assert net.training and rates["greedy"].utterances == 7 and not report


def test_an_empty_shard_yields_nothing(ms_context):
    from src.config import load_config
    from src.inference import feature_batches
    assert list(feature_batches([], [], load_config([]), 4)) == []


def test_pending_decodes_come_back_in_order_within_the_window():
    from concurrent.futures import Future

    from src.inference import in_order
    futures = [Future() for _ in range(6)]
    pulled = []

    def tasks():  # 1 and 2 finish at once, 3 has nothing to wait for, the others never
        for i, future in enumerate(futures):
            pulled.append(i)
            if i in (1, 2):
                future.set_result(i)
            yield i, None if i == 3 else [future]

    got = [(tag, len(pulled)) for tag, _ in in_order(tasks(), window=2)]
    # 0 waits until 3 tasks are held (more than the window), then 1 and 2, finished, follow;
    # 3 at once; 4 and 5 when the tasks end; never out of order
    assert got == [(0, 3), (1, 3), (2, 3), (3, 4), (4, 6), (5, 6)]


def test_eval_mode_puts_back_every_inner_cells_own_mode(ms_context):
    """Validation runs a wrapper never set to train around the network being trained: the
    network and its BatchNorm/LSTM cells must come back in training mode, each with its phase
    (otherwise later train-step graphs compile in eval mode)."""
    from src.config import load_config
    from src.deepspeech2 import InferenceNet, build_network
    from src.inference import eval_mode
    net = build_network(load_config(["--hidden_size=8", "--num_layers=1"]))
    net.set_train(True)
    wrapper = InferenceNet(net)  # as training.py builds it: its own flag says eval
    before = {name: (cell.training, cell.phase) for name, cell in net.cells_and_names()}
    assert before[""] == (True, "train") and before["conv.bn1"][0] is True
    with eval_mode(wrapper):
        assert not any(cell.training for _, cell in net.cells_and_names())
    assert {name: (cell.training, cell.phase) for name, cell in net.cells_and_names()} == before
    assert not wrapper.training
