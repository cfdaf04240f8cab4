"""What several stages share and none owns: scene cuts (``scenes``), per-shot statistics served
in one pass (``shotstats``), optical flow and warping (``flow``), colour-space transfer functions
and luma weights (``colourspace``), how much an edit jumps in time (``jumps``). Nothing here is
a node; stages import from here, never from each other."""
