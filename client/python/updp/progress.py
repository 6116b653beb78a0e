"""A text progress bar for jobs, as updpctl draws it (no tqdm)."""

import math


def bar(progress, width=30):
    """'[#####-----]  50%  500/1000  12.3/s  ETA 0:41  embed' for a Progress message."""
    p = progress
    if p.total <= 0:  # a count whose total is not known yet (files found so far)
        s = "[%s]       %d" % (" " * width, p.done)
        if p.rate > 0:
            s += "  %.1f/s" % p.rate
        if p.stage:
            s += "  " + p.stage
        return s
    f = min(max(p.done / p.total, 0.0), 1.0)
    fill = int(round(f * width))
    s = "[%s%s] %3d%%  %d/%d" % ("#" * fill, "-" * (width - fill), int(f * 100), p.done, p.total)
    if p.rate > 0:
        s += "  %.1f/s" % p.rate
        left = (p.total - p.done) / p.rate
        if left >= 0 and math.isfinite(left):
            secs = int(left)
            s += "  ETA %d:%02d" % (secs // 60, secs % 60)
    if p.HasField("loss"):
        s += "  loss %.4f" % p.loss
    if p.stage:
        s += "  " + p.stage
    return s


class Bar:
    """Draws a job's events on `out`: one updating line on a terminal; elsewhere (logs)
    a line when the state or stage changes or progress passes another tenth."""

    def __init__(self, out, state_name):
        self._out = out
        self._state_name = state_name
        self._tty = hasattr(out, "isatty") and out.isatty()
        self._last = None
        self._drawn = False

    def update(self, job):
        text = "%s %s %s" % (job.job_id, self._state_name(job.state), bar(job.progress))
        if self._tty:
            self._out.write("\r\033[K" + text)
            self._drawn = True
        else:
            p = job.progress
            tenth = int(10 * p.done / p.total) if p.total > 0 else -1
            key = (job.state, p.stage, tenth)
            if key == self._last:
                return
            self._last = key
            self._out.write(text + "\n")
        self._out.flush()

    def close(self):
        if self._tty and self._drawn:
            self._out.write("\n")
            self._out.flush()
