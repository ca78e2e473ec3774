"""Experiments on VITAL, floor by floor: ``config`` (what to run, checked when read), ``selection`` (which items),
``plan`` (a run directory's config, protocol and items), ``directory`` (its files, the only code that writes them),
``generation`` (the only module here that imports the generation stack), ``scoring``, ``report``, ``view``,
``tracking`` (MLflow). Reading, scoring, reporting and viewing a finished run import no torch, transformers or
peft and nothing that generates. Importing this package imports none of its modules."""
