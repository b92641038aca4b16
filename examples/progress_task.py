"""A task that reports its progress through a taskwatcher feedback file.

Usage: python3 examples/progress_task.py FEEDBACK_FILE [STEPS] [SECONDS_PER_STEP]
Each line it appends is also a heartbeat for the launcher's --timeout.
"""

import sys
import time


def main() -> int:
    path = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
    with open(path, "a", encoding="utf-8") as feedback:

        def report(line: str) -> None:
            feedback.write(line + "\n")
            feedback.flush()  # one complete line at a time: readers never see half a line

        report("[phase]warming up")
        for step in range(1, steps + 1):
            time.sleep(pause)
            report(f"[step]{step}/{steps}")
            report(f"[progress]{100 * step // steps}")
            print(f"step {step} done", flush=True)
        report("[phase]")  # the phase is over: clear the key
        report("[result]all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
