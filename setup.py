"""Package discovery: ``tasks/`` and ``configs/`` ship inside the package as ``nestbench.tasks``
and ``nestbench.configs`` (DESIGN.md: no top-level module named ``tasks``). Everything else is in
pyproject.toml."""

from setuptools import find_namespace_packages, find_packages, setup

packages = find_packages(include=["nestbench", "nestbench.*"])
packages += ["nestbench.tasks"] + [f"nestbench.tasks.{p}" for p in find_packages("tasks")]
packages += ["nestbench.configs"] + [
    f"nestbench.configs.{p}" for p in find_namespace_packages("configs")
]

setup(
    packages=packages,
    package_dir={
        "nestbench": "nestbench",
        "nestbench.tasks": "tasks",
        "nestbench.configs": "configs",
    },
    package_data={
        "": ["*.yaml", "*.json", "*.txt", "*.model", "*.nemo", "*.md"],
        "nestbench.configs": ["*.yaml", "*/*.yaml", "*/*.md"],
    },
    include_package_data=True,
)
