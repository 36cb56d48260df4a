"""Streaming recognition (src/streaming.py) against the offline network over the whole stream."""
import numpy as np
import pytest

HIDDEN = 16
BASE = ["--hidden_size=16", "--num_layers=2", "--bidirectional=false", "--normalize=global",
        "--lookahead=2"]


def stream_cfg(*overrides):
    from src.config import load_config
    return load_config([*BASE, *overrides])


def random_model(ms, cfg, paths, seed=0):
    """A tiny streaming network, random weights with non-trivial BatchNorm statistics and
    lookahead weights, normalised with the global statistics of `paths`, in inference mode."""
    from src.deepspeech2 import build_network
    from src.features import global_stats
    ms.set_seed(seed)
    net = build_network(cfg)
    rng = np.random.default_rng(seed)
    for p in net.get_parameters():
        if p.name.endswith("moving_mean"):
            p.set_data(ms.Tensor(rng.normal(0, 0.3, p.shape).astype(np.float32)))
        elif p.name.endswith("moving_variance"):
            p.set_data(ms.Tensor(rng.uniform(0.5, 2.0, p.shape).astype(np.float32)))
        elif p.name == "lookahead.weight":
            p.set_data(ms.Tensor(rng.normal(0, 1, p.shape).astype(np.float32)))
    mean, std, _ = global_stats(paths, cfg.features)
    net.norm.set_stats(mean, std)
    net.set_train(False)
    return net


@pytest.fixture(scope="module")
def corpus(sample_data):
    from src.manifest import read_manifest
    return [e.audio for e in read_manifest(str(sample_data / "libri_test_clean_manifest.csv"))]


@pytest.fixture(scope="module")
def model(ms_context, corpus):
    cfg = stream_cfg()
    return cfg, random_model(ms_context, cfg, corpus[:8])


def offline(ms, net, cfg, waves, extra=0):
    """The offline pass (InferenceNet) over `waves` as one batch padded `extra` frames beyond
    the longest -> [log-probabilities (T'_b, C)]."""
    from src.deepspeech2 import InferenceNet
    from src.features import features_of
    from src.inference import log_probs, pad_batch
    specs = [features_of(w, cfg.features) for w in waves]
    x, lengths = pad_batch(specs, max(s.shape[1] for s in specs) + extra)  # (B, 1, F, T)
    probs, out_lengths = log_probs(InferenceNet(net), x, lengths)  # (T', B, C)
    return [probs[:n, b] for b, n in enumerate(out_lengths)]


def streamed(engine, samples, sizes):
    """engine's log-probabilities (T', C) of `samples` fed in pieces of `sizes` (then the rest)."""
    out, start = [], 0
    for size in sizes:
        out += engine.accept(samples[start:start + size])
        start += size
    out += engine.accept(samples[start:]) + engine.finish()
    return np.concatenate(out)


def greedy(probs):
    from src.decoder import GreedyDecoder
    from src.text import load_labels
    return GreedyDecoder(load_labels(stream_cfg().labels_path)).decode(probs).text


@pytest.mark.parametrize("chunk_ms", [20, 60, 160])
def test_streaming_equals_the_offline_pass_for_any_piece_sizes(model, corpus, ms_context,
                                                               chunk_ms):
    """Random piece sizes (seeded), the whole file at once, and int16 bytes cut at odd byte
    counts: the log-probabilities of the offline pass over the whole utterance, and its text."""
    from src.features import load_audio
    from src.streaming import StreamingRecognizer
    base, net = model
    cfg = stream_cfg(f"--chunk_ms={chunk_ms}")
    wave = load_audio(corpus[0], 16000)
    want = offline(ms_context, net, cfg, [wave])[0]
    engine = StreamingRecognizer(net, cfg)
    rng = np.random.default_rng(chunk_ms)
    pcm = np.round(wave * 32767).astype(np.int16)  # load_audio's scale: the same samples
    for got in (streamed(engine, wave, rng.integers(1, 4000, 40)), streamed(engine, wave, []),
                streamed(engine, pcm.tobytes(), rng.integers(1, 999, 80) * 2 + 1)):
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4
        assert greedy(got) == greedy(want)


def test_streams_batched_by_a_shared_step_equal_the_offline_pass_each(model, corpus,
                                                                     ms_context):
    """serve.py's batching (src/batching.py): five streams in their own threads, pieces of
    different sizes, their chunk steps run as batches of up to 4 (padded to powers of two):
    each stream's log-probabilities are its offline pass's, as a stream alone gives them."""
    import threading

    from src.batching import SharedStep
    from src.features import load_audio
    from src.streaming import StreamingRecognizer
    from src.streaming_step import network_step
    cfg, net = model
    waves = [load_audio(path, 16000) for path in corpus[:5]]
    shared, got = SharedStep(network_step(net, cfg), max_batch=4), [None] * len(waves)

    def run(k):
        got[k] = streamed(StreamingRecognizer(shared), waves[k], [300 + 97 * k] * 200)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(waves))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        shared.close()
    assert shared.batches < shared.steps  # some steps did run together
    for wave, probs in zip(waves, got):
        want = offline(ms_context, net, cfg, [wave])[0]
        assert probs.shape == want.shape and np.abs(probs - want).max() <= 1e-4
        assert greedy(probs) == greedy(want)


def test_one_sample_pieces_and_the_latency_they_show(model, corpus, ms_context):
    """Fed one sample at a time, each output frame comes out as soon as its last sample is in:
    its delay behind the frame's time is at most algorithmic_latency_ms, and reaches it."""
    from src.features import load_audio
    from src.streaming import StreamingRecognizer, algorithmic_latency_ms
    _, net = model
    cfg = stream_cfg()
    wave = load_audio(corpus[1], 16000)[:20000]
    engine = StreamingRecognizer(net, cfg)
    rows, delays = [], []
    for n in range(len(wave)):
        for probs in engine.accept(wave[n:n + 1]):
            done = sum(len(r) for r in rows)
            delays += [(n + 1) / 16000 - (done + i) * 0.02 for i in range(len(probs))]
            rows.append(probs)
    got, want = np.concatenate(rows + engine.finish()), offline(ms_context, net, cfg, [wave])[0]
    assert np.abs(got - want).max() <= 1e-4 and greedy(got) == greedy(want)
    assert max(delays) == pytest.approx(algorithmic_latency_ms(cfg)["total"] / 1000)


def test_a_shorter_utterance_in_a_padded_batch_streams_as_it_runs_alone(model, corpus,
                                                                        ms_context):
    """Global normalisation and the lookahead never read the padding: in a padded batch the
    shorter utterance's outputs are those of it alone, and of its stream."""
    from src.features import load_audio
    from src.streaming import StreamingRecognizer
    cfg, net = model
    long, short = load_audio(corpus[2], 16000), load_audio(corpus[3], 16000)[:9000]
    batch = offline(ms_context, net, cfg, [long, short], extra=13)
    alone = offline(ms_context, net, cfg, [short])[0]
    assert np.abs(batch[1] - alone).max() <= 1e-5
    got = streamed(StreamingRecognizer(net, cfg), short, [3000])
    assert np.abs(got - batch[1]).max() <= 1e-4


def test_other_sample_rates_are_resampled_as_they_arrive(model, corpus, ms_context, tmp_path):
    """8 kHz int16 pieces: resampled in the stream (soxr), close to the offline pass over the
    file resampled whole (librosa: soxr too); exactness is owed at the model's rate only."""
    import librosa
    import soundfile as sf

    from src.errors import UserError
    from src.features import load_audio
    from src.streaming import StreamingRecognizer
    cfg, net = model
    wave8k = librosa.resample(load_audio(corpus[4], 16000), orig_sr=16000, target_sr=8000)
    pcm = np.round(wave8k * 32767).astype(np.int16)
    sf.write(tmp_path / "8k.wav", pcm, 8000, subtype="PCM_16")
    want = offline(ms_context, net, cfg, [load_audio(str(tmp_path / "8k.wav"), 16000)])[0]
    engine = StreamingRecognizer(net, cfg)
    out = [p for i in range(0, len(pcm), 777) for p in engine.accept(pcm[i:i + 777], 8000)]
    got = np.concatenate(out + engine.finish())
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-3  # measured 5e-7: soxr HQ streamed and whole agree
    with pytest.raises(UserError, match="cannot change: it started at 8000 Hz"):
        engine.accept(pcm[:100], 8000)
        engine.accept(pcm[:100], 16000)


def silence_speaks_space(ms, net, cfg, wave, silent):
    """Make `net` answer the space label on silence: its last LSTM's last unit becomes a
    constant (a bias for the classifier), and the space row of the classifier a least-squares
    read-out of (clearly) silent vs speech frames (`silent`: (T',) 1 / -1 / 0 = unused) of the
    offline pass over `wave`; the other rows are kept, scaled down."""
    from src.features import features_of
    from src.text import load_labels
    params = {p.name: p for p in net.get_parameters()}
    last, k = f"RNN.lstms.{cfg.model.num_layers - 1}.", HIDDEN - 1
    gates = [k, HIDDEN + k, 2 * HIDDEN + k, 3 * HIDDEN + k]  # i, f, g, o of unit k
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        value = params[last + name].asnumpy().copy()
        value[gates] = [10, -10, 10, 10] if name == "bias_ih_l0" else 0  # h_k = tanh(1) x 1
        params[last + name].set_data(ms.Tensor(value))
    if "fc.module.bias" in params:  # model.blank_bias: no offset in the read-out below
        bias = params["fc.module.bias"]
        bias.set_data(ms.Tensor(np.zeros(bias.shape, np.float32)))
    fc = params["fc.module.weight"]
    weights = fc.asnumpy().copy()
    fc.set_data(ms.Tensor(np.eye(*weights.shape, dtype=np.float32)))  # logits = hidden outputs
    spec = features_of(wave, cfg.features)[None, None]
    hidden = net(ms.Tensor(spec), ms.Tensor(np.array([spec.shape[3]], np.int32)))[0]
    hidden = hidden.asnumpy()[:, 0, :HIDDEN]  # (T', H)
    used = silent != 0
    readout = np.linalg.lstsq(hidden[used], silent[used].astype(np.float64), rcond=None)[0]
    weights *= 0.3
    weights[load_labels(cfg.labels_path).index(" ")] = 10 * readout
    fc.set_data(ms.Tensor(weights.astype(np.float32)))


def speech_or_silence(centres, gap, end, margin=3200):
    """Per output frame (its centre, in samples): 1 well inside the silent `gap` (start, end),
    -1 well inside the speech around it, 0 near a boundary (unused)."""
    def inside(low, high):
        return (centres > low + margin) & (centres < high - margin)
    return inside(*gap).astype(int) - inside(0, gap[0]) - inside(gap[1], end)


@pytest.fixture(scope="module")
def pause_model(ms_context, corpus):
    """(net, stream, gap): two utterances with 1 s of silence between them (`gap`, seconds),
    and a network that answers the space on silence."""
    from src.features import load_audio
    cfg = stream_cfg()
    net = random_model(ms_context, cfg, corpus[:8], seed=1)
    first, second = load_audio(corpus[0], 16000), load_audio(corpus[1], 16000)
    stream = np.concatenate([first, np.zeros(16000, np.float32), second])
    gap = (len(first), len(first) + 16000)
    centres = np.arange(1 + len(stream) // 320) * 320
    silence_speaks_space(ms_context, net, cfg, stream,
                         speech_or_silence(centres, gap, len(stream)))
    return net, stream, (gap[0] / 16000, gap[1] / 16000)


def test_a_pause_ends_a_segment_and_the_finals_make_the_offline_text(pause_model, ms_context):
    """Two finals, cut in the pause, with word times inside them; joined, the offline greedy
    text of the whole stream (whose path has spaces in the pause: a word break there)."""
    from src.streaming import StreamingTranscriber
    net, stream, gap = pause_model
    cfg = stream_cfg()
    want = greedy(offline(ms_context, net, cfg, [stream])[0])
    assert "  " not in want and want.count(" ") >= 1, f"the pause gives no word break: {want!r}"
    engine = StreamingTranscriber(net, cfg)
    events = [e for i in range(0, len(stream), 1600) for e in engine.accept(stream[i:i + 1600])]
    events += engine.finish()
    finals = [e for e in events if e["event"] == "final"]
    assert len(finals) == 2
    assert " ".join(f["text"] for f in finals) == want
    assert gap[0] < finals[0]["end"] <= gap[1] <= finals[1]["start"]
    for final in finals:
        assert [w["word"] for w in final["words"]] == final["text"].split()
        assert all(final["start"] <= w["start"] < w["end"] <= final["end"] for w in final["words"])
    partials = [e for e in events if e["event"] == "partial"]
    assert partials and all(p["text"] for p in partials)


def test_buffers_stay_bounded_over_a_long_stream(pause_model):
    """A looped stream (utterances and pauses, 10 times): finals release their frames, the
    engine's buffers keep their size, and reset_state zeroes the LSTM state at each endpoint."""
    from src.streaming import StreamingTranscriber
    net, stream, _ = pause_model
    engine = StreamingTranscriber(net, stream_cfg("--reset_state=true"))
    recognizer, resets = engine.recognizer, []
    reset = recognizer.reset_recurrent
    recognizer.reset_recurrent = lambda: resets.append(reset())
    sizes, finals = [], 0
    loop = np.concatenate([stream, np.zeros(16000, np.float32)])
    for _ in range(10):
        for i in range(0, len(loop), 4000):
            finals += sum(e["event"] == "final" for e in engine.accept(loop[i:i + 4000]))
            sizes.append((len(engine.segmenter.rows), recognizer.frames.shape[1],
                          len(recognizer.features.buffer)))
    assert finals >= 10 and len(resets) == finals
    rows, frames, samples = np.max(sizes, axis=0)
    assert rows < len(loop) / 320  # never more than one loop of output frames held
    assert frames < recognizer.g.window and samples < 320 + 4000


def test_segments_are_cut_at_pauses_and_before_the_last_word_when_too_long():
    """The Segmenter on made-up best paths: an endpoint after `endpoint_silence` without a
    character; a segment reaching max_segment is cut before its last word; word times are in
    seconds of the stream."""
    from src.streaming import Segmenter
    from src.text import load_labels
    cfg = stream_cfg("--endpoint_silence=0.1", "--max_segment=0.3")
    labels = load_labels(cfg.labels_path)

    def path(text):  # "_" blank; one output frame per character
        ids = [len(labels) - 1 if ch == "_" else labels.index(ch) for ch in text]
        return np.log(np.eye(len(labels))[ids] * 0.9 + 0.1 / len(labels))  # (T, C)

    seg = Segmenter(cfg, labels, 0.02)
    events, endpoint = seg.push(path("___AB_C_______DE FG_HI JK_LM N"))
    finals = [e for e in events if e["event"] == "final"]
    assert endpoint and finals[0]["text"] == "ABC"  # 5 frames without a character
    assert (finals[0]["start"], finals[0]["end"]) == (0.06, 0.24)
    assert (finals[0]["words"][0]["start"], finals[0]["words"][0]["end"]) == (0.06, 0.14)
    assert finals[1]["text"] == "DE FGHI"  # 15 frames: cut before JKLM
    assert (finals[1]["start"], finals[1]["end"]) == (0.28, 0.46)
    assert events[-1] == {"event": "partial", "text": "JKLM N", "start": 0.46, "end": 0.6}
    assert seg.finish()[0]["text"] == "JKLM N"


def test_models_that_cannot_stream_are_refused_in_one_line(ms_context):
    from src.deepspeech2 import build_network
    from src.errors import UserError
    from src.streaming import StreamingRecognizer
    for overrides, reason in ((["--bidirectional=true"], "it is bidirectional"),
                              (["--normalize=utterance"], "normalised per utterance")):
        cfg = stream_cfg(*overrides)
        with pytest.raises(UserError) as err:
            StreamingRecognizer(build_network(cfg), cfg)
        assert reason in str(err.value) and "\n" not in str(err.value)
        assert "--features.normalize=global" in str(err.value)


def test_bad_samples_are_refused_in_one_line_and_the_stream_goes_on(ms_context):
    """NaN samples, another sample format, a rate change: one UserError line each, and the
    engine still takes good audio afterwards."""
    from src.deepspeech2 import build_network
    from src.errors import UserError
    from src.streaming import StreamingRecognizer
    cfg = stream_cfg()
    engine = StreamingRecognizer(build_network(cfg), cfg)
    good = np.zeros(3200, np.float32)
    engine.accept(good, 16000)
    for bad, rate, said in ((np.array([0.1, np.nan], np.float32), 16000, "NaN or infinite"),
                            (np.zeros(10, np.int32), 16000, "must be int16 PCM"),
                            (good, 8000, "cannot change: it started at 16000 Hz")):
        with pytest.raises(UserError, match=said) as err:
            engine.accept(bad, rate)
        assert "\n" not in str(err.value)
    engine.accept(good, 16000)
    assert sum(len(p) for p in engine.finish()) > 0


def test_chunks_must_be_whole_output_frames():
    from src.errors import UserError
    from src.streaming import chunk_frames
    assert chunk_frames(stream_cfg("--chunk_ms=160")) == 16
    with pytest.raises(UserError, match="stream.chunk_ms=150 must be a multiple of 20 ms"):
        chunk_frames(stream_cfg("--chunk_ms=150"))


def test_algorithmic_latency_by_hand():
    """Hand computation from the zoo's conv spec, 16 kHz, 20 ms windows, 10 ms hops: the
    window's half after a frame (10 ms); conv1 sees 5 frames ahead, conv2 5 conv1 outputs = 10
    frames (150 ms); each lookahead frame is 2 hops; a chunk's first output waits C - 2 frames."""
    from src.streaming import algorithmic_latency_ms
    got = algorithmic_latency_ms(stream_cfg("--chunk_ms=160"))
    assert got == pytest.approx({"features": 10, "front_end": 150, "lookahead": 40,
                                 "chunk": 140, "total": 340})
    assert algorithmic_latency_ms(stream_cfg("--chunk_ms=20"), lookahead=0)["total"] == 160


def test_training_puts_the_manifest_statistics_into_the_checkpoint(corpus, ms_context, tmp_path,
                                                                   caplog):
    """Before the first step: mean and std per frequency over every frame of the training
    manifest (numpy over its features here), kept with the weights; a resumed run keeps them."""
    import logging
    from types import SimpleNamespace

    from src.checkpoints import network_from_checkpoint, save_network
    from src.deepspeech2 import build_network
    from src.features import load_audio, spectrogram
    from src.training import normalisation_stats
    cfg, logger = stream_cfg(), logging.getLogger("test_streaming")
    paths = corpus[:6]
    frames = np.concatenate([spectrogram(load_audio(p, 16000), normalize=False) for p in paths],
                            axis=1).astype(np.float64)  # (F, all frames)
    net = build_network(cfg)
    with caplog.at_level(logging.INFO, logger="test_streaming"):
        normalisation_stats(cfg, net, [SimpleNamespace(audio=p) for p in paths], 0, logger)
    assert "global feature statistics of 6 training utterances" in caplog.text
    np.testing.assert_allclose(net.norm.mean.asnumpy(), frames.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(net.norm.std.asnumpy(), frames.std(axis=1), rtol=1e-5)
    save_network(net, str(tmp_path / "net.ckpt"), cfg.features)
    loaded = network_from_checkpoint(cfg, str(tmp_path / "net.ckpt"))
    normalisation_stats(cfg, loaded, [], 100, logger)  # resumed at step 100: nothing recomputed
    np.testing.assert_array_equal(loaded.norm.mean.asnumpy(), net.norm.mean.asnumpy())
    np.testing.assert_array_equal(loaded.norm.std.asnumpy(), net.norm.std.asnumpy())
