"""The papers' pack: published numbers of VITAL and Modular Pluralism as data, their metric definitions against
modplural's, and ``modplural compare`` (a run's metrics beside them; reads files only, loads no model)."""
