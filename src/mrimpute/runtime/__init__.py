"""What the jobs share: the synthesis session and its engine, model loading, inputs and outputs, devices and
processes, progress reporting, and the training settings, checks and steps. It never imports a job (pipeline)."""
