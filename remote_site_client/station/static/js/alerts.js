// A sound and a desktop notification for a decision or a call. The browser lets a page play sound and
// ask for notifications only after a tap, hence the "Turn on alerts" button.

export class Alerts {
  constructor(button) {
    this.button = button;
    this.audio = null;
    button.addEventListener("click", () => this.enable());
    // Any first tap or key lets the page make sound; notifications still wait for the button.
    const unlock = () => {
      this.audio = this.audio || new AudioContext();
    };
    document.addEventListener("pointerdown", unlock, { once: true });
    document.addEventListener("keydown", unlock, { once: true });
  }

  offer() {
    const granted = "Notification" in window && Notification.permission === "granted";
    this.button.hidden = granted && this.audio !== null;
  }

  async enable() {
    this.audio = this.audio || new AudioContext();
    if ("Notification" in window && Notification.permission === "default") {
      await Notification.requestPermission();
    }
    this.button.hidden = true;
  }

  chime() {
    if (!this.audio) return;
    const now = this.audio.currentTime;
    for (const [i, freq] of [880, 1175].entries()) {
      const osc = this.audio.createOscillator();
      const gain = this.audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + i * 0.18);
      gain.gain.exponentialRampToValueAtTime(0.3, now + i * 0.18 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.18 + 0.3);
      osc.connect(gain).connect(this.audio.destination);
      osc.start(now + i * 0.18);
      osc.stop(now + i * 0.18 + 0.32);
    }
  }

  notify(title, body) {
    this.chime();
    if ("Notification" in window && Notification.permission === "granted") {
      new Notification(title, { body, tag: title });
    }
  }
}
