"""The frames a run has: subset plans, pools, collages, frame jobs per epoch, run settings (mode, seed).

"Plan" means this one thing in collage_ext: which frames a run trains. It is decided here only
(``tests/test_one_producer.py``), torch-free, for the CLI, the studio and the sd-scripts adapter alike:

- ``subsets``: a reader's ``SubsetInput`` -> ``plan_subset`` -> ``PlannedSubset`` (pool, collage,
  dynamic slots, static variants, single repeats; ``PlannedSubset.jobs`` lists an epoch's frames);
- ``jobs``: ``FrameJob`` (one frame: its name, params, rendering with re-planning after failures),
  ``FrameSet`` and ``frames_for`` (a run's frames);
- ``project``: the CLI's ``Project`` as ``SubsetInput``s (the adapter maps sd-scripts' subsets in
  ``sdscripts/mapper.py``);
- ``pool`` (who shares a frame), ``collage`` (a frame's params, pixels and caption), ``policy``
  (the per-image error policy), ``framestats`` (fill and span), ``frames`` (a frame as a file),
  ``singles`` (cropped single images), ``framesets`` (the CLI's text encoder), ``run`` (mode, seed).
"""
