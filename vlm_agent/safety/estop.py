"""E-stop state that survives a supervisor restart: a small latch file (plain Python).

Why: a supervisor that crashes or is restarted (respawn, `vlm-agent up` again) must not come back with
the e-stop silently released. With a latch file configured, every latch and release is written through
(atomically: temporary file, fsync, rename, so a power cut leaves the old or the new state, never half a
file), and the state is read back at start-up.

File format: JSON `{"latched": true|false, "reason": "..."}`. At start-up:
- no file: released (nothing was ever latched here; the first latch creates it);
- a readable file: its state;
- an unreadable or malformed file: **latched**, with the error as the reason (fail safe; delete or fix
  the file, or release explicitly, to move).
"""
from __future__ import annotations

import json
import os
import tempfile


class EstopLatchFile:
    """Reads and writes the latched e-stop state at `path` (a local file path)."""

    def __init__(self, path: str):
        if not path:
            raise ValueError("EstopLatchFile: path must not be empty")
        self.path = path

    def load(self) -> tuple[bool, str]:
        """(latched, reason) at start-up; see the module docstring for the rules."""
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return False, f"no e-stop latch file at {self.path} yet"
        except (OSError, ValueError) as exc:
            return True, f"e-stop latch file {self.path} unreadable ({exc}): treated as latched"
        if not isinstance(data, dict) or not isinstance(data.get("latched"), bool):
            return True, f"e-stop latch file {self.path} malformed ({data!r:.80}): treated as latched"
        if data["latched"]:
            return True, f"e-stop latched before restart ({data.get('reason') or 'no reason recorded'}; {self.path})"
        return False, f"e-stop released before restart ({self.path})"

    def save(self, latched: bool, reason: str = "") -> None:
        """Write the state atomically; raises OSError when it cannot be written."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".estop-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"latched": bool(latched), "reason": str(reason)}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
