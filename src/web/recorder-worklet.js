// The microphone's samples, averaged to mono, to the page in blocks of about 100 ms: the page
// sends them to WS /v1/stream as f32le at the AudioContext's rate (the server resamples).
class Recorder extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate / 10);
    this.block = new Float32Array(this.size);
    this.filled = 0;
    this.recording = true;
    // "flush" (Stop): the samples of the block in progress, then "flushed"; nothing after
    this.port.onmessage = () => {
      this.port.postMessage(this.block.slice(0, this.filled));
      this.port.postMessage("flushed");
      this.recording = false;
    };
  }

  process(inputs) {
    if (!this.recording) return false;
    const channels = inputs[0];
    if (channels && channels.length) {
      const frames = channels[0].length;
      for (let i = 0; i < frames; i++) {
        let sum = 0;
        for (const channel of channels) sum += channel[i];
        this.block[this.filled++] = sum / channels.length;
        if (this.filled === this.size) {
          // the block's buffer is handed over (transferred), so a new one is made each time
          this.port.postMessage(this.block, [this.block.buffer]);
          this.block = new Float32Array(this.size);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("recorder", Recorder);
