"""Default YAML configs (run.yaml, tasks/, encoders/, sweeps/, pretrain/), shipped as nestbench.configs."""
