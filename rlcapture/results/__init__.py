"""What a recording says, read back: the tools over a run folder's manifest.

``summary`` (the per-run and per-seed summary, printed and saved), ``stats``
(mean, IQM, bootstrap intervals, success rate), ``report`` (the static HTML
page), ``plot`` (the learning curve, matplotlib) and ``progress`` (the bar
drawn while a recording runs). Of the engine they import only its values:
the run folder, the manifest reader and the end reasons.
"""
