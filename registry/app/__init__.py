"""The composition root: the only reader of Settings (``configs``), the only chooser of classes
(``services``), the job table (``jobs``), the daemon (``daemon``) and the console entry point (``main``)."""
