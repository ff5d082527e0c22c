"""``ntk-lab``, the command line: it sits above ``experiments`` (studies) and ``papers``
(published claims), and is the only place that chooses a matplotlib backend."""
