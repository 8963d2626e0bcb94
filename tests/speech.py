"""Stereo test recordings with known timing: real speech from Debian's espeak-ng, placed with sox.

Each stretch of speech is espeak-ng's words with their leading and trailing
silence cut, stretched (``tempo``, pitch kept) to exactly the stretch's length,
and padded to its place; a channel is its stretches mixed; the recording is the
caller's channel on the left and the agent's on the right, 16 kHz PCM16, as
Patter writes it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

WORDS = (
    "hello I would like to book a table for two tonight",
    "certainly what time would you like to come in this evening",
    "around eight would be lovely thank you",
    "let me check the booking system for you now",
)


def _stretch(work: Path, name: str, words: str, voice: str, at: float, seconds: float, length: float) -> Path:
    raw, trimmed, placed = work / f"{name}-raw.wav", work / f"{name}-trim.wav", work / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), words], check=True)
    # Silence off both ends (above 1 % for 10 ms), at the recording's format.
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(trimmed),
                    "silence", "1", "0.01", "1%", "reverse", "silence", "1", "0.01", "1%", "reverse"], check=True)
    spoken = float(subprocess.run(["soxi", "-D", str(trimmed)], check=True, capture_output=True, text=True).stdout)
    subprocess.run(["sox", str(trimmed), str(placed), "tempo", "-s", f"{spoken / seconds:.6f}",
                    "trim", "0", f"{seconds}", "pad", f"{at}", f"{max(0.0, length - at - seconds)}",
                    "trim", "0", f"{length}"], check=True)
    return placed


def make_conversation(out: Path, caller: list[tuple[float, float]], agent: list[tuple[float, float]], length: float,
                      *, noise: float = 0.0) -> Path:
    """A stereo WAV at ``out``: speech on the left over each (start, end) of ``caller``, on the right over ``agent``.

    ``noise``: white noise of that amplitude (full scale 1) under both channels, as a phone line has.
    """
    work = out.parent / f".{out.name}.parts"
    work.mkdir(parents=True, exist_ok=True)
    channels = []
    for side, spans, voice in (("left", caller, "en"), ("right", agent, "en+f3")):
        parts = [
            str(_stretch(work, f"{side}{i}", WORDS[i % len(WORDS)], voice, start, end - start, length))
            for i, (start, end) in enumerate(spans)
        ]
        channel = work / f"{side}.wav"
        if len(parts) == 1:
            shutil.copy(parts[0], channel)
        elif parts:
            subprocess.run(["sox", "-m", *sum((["-v", "1"] + [p] for p in parts), []), str(channel)], check=True)
        else:
            subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(channel), "trim", "0", f"{length}"], check=True)
        if noise:
            hiss, noisy = work / f"{side}-noise.wav", work / f"{side}-noisy.wav"
            subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(hiss), "synth", f"{length}",
                            "whitenoise", "vol", f"{noise}"], check=True)
            subprocess.run(["sox", "-m", "-v", "1", str(channel), "-v", "1", str(hiss), str(noisy)], check=True)
            channel = noisy
        channels.append(str(channel))
    subprocess.run(["sox", "-M", *channels, "-b", "16", "-e", "signed-integer", str(out)], check=True)
    shutil.rmtree(work)
    return out
