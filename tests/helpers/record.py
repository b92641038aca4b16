"""Task program: write what the task received (argv, taskwatcher's variables) as JSON to OUT.

Usage: record.py OUT [ARG...]
"""

import json
import os
import sys

out, args = sys.argv[1], sys.argv[2:]
feedback = os.environ.get("TASKWATCHER_FEEDBACK")
facts = {
    "argv": args,
    "taskid": os.environ.get("TASKWATCHER_TASKID"),
    "feedback": feedback,
    "feedback_existed": bool(feedback) and os.path.exists(feedback),
    "feedback_content": None,
}
if facts["feedback_existed"]:
    with open(feedback) as f:
        facts["feedback_content"] = f.read()
with open(out + ".tmp", "w") as f:
    json.dump(facts, f)
os.replace(out + ".tmp", out)
