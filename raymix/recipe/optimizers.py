"""The deep coordinate's optimizers (DeText's AdamW, Adam, SGD), as recipe specs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from raymix.recipe.base import NonNegative, Positive, Probability, Spec


class AdamW(Spec):
    """DeText's AdamW (BERT's ``AdamWeightDecayOptimizer``): Adam plus decoupled weight decay
    ``p -= lr * wd * p`` on every non-bias variable, no bias correction unless asked.

    ``learning_rate`` may be given here for convenience; it is moved to the coordinate's
    ``learning_rate`` (the one place it lives), and giving both with different values fails.
    """

    kind: Literal["adamw"] = "adamw"
    learning_rate: Positive | None = None
    weight_decay: NonNegative = 0.01
    beta_1: Probability = 0.9
    beta_2: Probability = 0.999
    epsilon: Positive = 1e-6
    bias_correction: bool = False


class Adam(Spec):
    """Adam with bias correction and no weight decay."""

    kind: Literal["adam"] = "adam"
    learning_rate: Positive | None = None
    beta_1: Probability = 0.9
    beta_2: Probability = 0.999
    epsilon: Positive = 1e-7


class SGD(Spec):
    """Plain (optionally momentum) gradient descent: deterministic, stateless without momentum."""

    kind: Literal["sgd"] = "sgd"
    learning_rate: Positive | None = None
    momentum: Probability = 0.0


DeepOptimizer = Annotated[AdamW | Adam | SGD, Field(discriminator="kind")]
OPTIMIZERS = {"adamw": AdamW, "adam": Adam, "sgd": SGD}
