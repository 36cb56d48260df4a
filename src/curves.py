"""Learning curves as a picture: training loss per step and validation WER/CER per epoch.

    plot_curves("outputs/train/metrics.jsonl", "outputs/train/learning_curves.png")

Reads the metrics.jsonl that training writes (loss lines every log_interval steps, one
validation line per epoch) and draws two panels with matplotlib's headless Agg backend.
"""
import json
import os


def read_metrics(path):
    """(loss points [(step, loss)], validation points [(epoch, wer, cer)]) of a metrics.jsonl."""
    losses, vals = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record.get("loss") is not None:
                losses.append((record["step"], record["loss"]))
            if "val_wer" in record:
                vals.append((record["epoch"], record["val_wer"], record["val_cer"]))
    return losses, vals


def plot_curves(metrics_path, png_path):
    """Write the PNG; returns its path. Raises ValueError when there is nothing to draw."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    losses, vals = read_metrics(metrics_path)
    if not losses and not vals:
        raise ValueError(f"{metrics_path} holds no loss or validation lines")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7))
    if losses:
        top.plot(*zip(*losses), color="tab:blue")
    top.set(xlabel="step", ylabel="CTC loss (mean over log_interval)", title="training loss")
    top.grid(alpha=0.3)
    if vals:
        epochs, wer, cer = zip(*vals)
        bottom.plot(epochs, wer, "o-", label="WER")
        bottom.plot(epochs, cer, "s-", label="CER")
        bottom.legend()
    bottom.set(xlabel="epoch", ylabel="%", title="validation", ylim=(0, None))
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
