"""What the stages of one run share, built once at the top of the loop and handed to every stage
through ``StageContext.services``: the Label Studio connection (started on first use, stopped
when the run ends), the simulated annotators' judge, and the reward model scorer of the eval."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from imagepref.errors import BadInputError
from imagepref.recipes.config import Recipe
from imagepref.recipes.run_folder import RunFolder


class LabelStudio:
    """The run's Label Studio: the recipe's deployment (``label.url``) or a managed server whose
    state lives in ``<run>/label-studio`` and which serves images from ``<run>/stages``."""

    def __init__(self, run: RunFolder, recipe: Recipe) -> None:
        self.run, self.recipe = run, recipe
        self._connection = None
        self._started = False
        self.document_root: Path | None = None

    def connection(self):
        """A checked connection to the recipe's Label Studio (the managed one is started here)."""
        if self._connection is not None:
            return self._connection
        from imagepref.labeling import connect, start_server

        section = self.recipe.label
        if section.url:
            self._connection = connect(section.url, section.token_env)
            if not section.document_root:
                raise BadInputError(
                    "label.url needs label.document_root: the folder that server serves local files from, "
                    f"which must contain {self.run.files_root}"
                )
            self.document_root = Path(section.document_root).resolve()
            self._connection.files_root = self.document_root  # so pull can warn about missing images
        else:
            self.run.files_root.mkdir(parents=True, exist_ok=True)
            status = start_server(self.run.label_studio_dir, section.port, self.run.files_root)
            self._started = True
            self.run.log(
                "label-studio",
                f"running at {status.url} (pid {status.pid}); admin login and API token in "
                f"{self.run.label_studio_dir / 'secrets.json'} (0600)",
            )
            self._connection = connect(state_dir=self.run.label_studio_dir)
            self.document_root = self.run.files_root.resolve()
        self._connection.check()
        return self._connection

    def close(self) -> None:
        """Close the connection and stop the server this run started."""
        if self._connection is not None:
            self._connection.close()
        if self._started and self.recipe.label.mode == "human":
            # People may still be labeling: leave their server up.
            self.run.log(
                "label-studio",
                "left running for the annotators; stop it with `imagepref label server stop "
                f"--state-dir {self.run.label_studio_dir}`",
            )
        elif self._started:
            from imagepref.labeling import stop_server

            stop_server(self.run.label_studio_dir)
            self.run.log("label-studio", "stopped", console=False)


class Services:
    """The services of one run; nothing starts or loads until a stage first asks for it."""

    def __init__(self, run: RunFolder, recipe: Recipe) -> None:
        self.recipe = recipe
        self.label_studio = LabelStudio(run, recipe)
        self._judges: dict[tuple[str, ...], object] = {}

    def judge(self, axes: Sequence[str]):
        """The simulated annotators' judge (``label.judge``, reading text with ``label.ocr_engine``)."""
        from imagepref.eval.judges import load_judge

        key = tuple(axes)
        if key not in self._judges:
            section = self.recipe.label
            self._judges[key] = load_judge(section.judge, key, section.ocr_engine, setting="label.judge")
        return self._judges[key]

    def reward_scorer(self, model: Path):
        """The reward model in ``model`` as the eval's per-axis scorer."""
        from imagepref.eval.runner import reward_model_scorer

        return reward_model_scorer(model)

    def close(self) -> None:
        """Stop what the run started."""
        self.label_studio.close()
