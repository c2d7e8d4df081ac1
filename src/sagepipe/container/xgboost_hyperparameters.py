"""Hyperparameters of the built-in XGBoost, checked and typed as the SageMaker XGBoost image does.

Part of ``xgboost_algorithm.py`` (it imports this file from its own folder). The names, ranges,
aliases, dependency checks and messages follow aws/sagemaker-xgboost-container at tag v1.7-1
(``algorithm_mode/hyperparameter_validation.py``, ``sagemaker_algorithm_toolkit/``). Standard
library only; Python 3.6 and up.
"""

# ruff: noqa: UP006, UP035, UP045  (typing generics: this file runs on Python 3.6)
import ast
from typing import Any, Callable, Dict, List, Optional, Tuple


class ToolkitError(Exception):
    """A failure the container reports; ``caused_by`` adds ``(caused by X)`` as it does."""

    def __init__(self, message: str, caused_by: Optional[BaseException] = None) -> None:
        if caused_by is not None:
            message += f" (caused by {type(caused_by).__name__})"
        super().__init__(message)
        self.message = message


class UserError(ToolkitError):
    """A failure the user can avoid (a hyperparameter, a channel, the data)."""


class AlgorithmError(ToolkitError):
    """A failure inside the algorithm (xgboost raised)."""


# constants/xgb_constants.py
MAXIMIZE_METRICS = [
    "accuracy",
    "auc",
    "aucpr",
    "balanced_accuracy",
    "f1",
    "f1_binary",
    "f1_macro",
    "map",
    "ndcg",
    "precision",
    "r2",
    "recall",
    "precision_macro",
    "precision_micro",
    "recall_macro",
    "recall_micro",
]
MINIMIZE_METRICS = [
    "aft-nloglik",
    "cox-nloglik",
    "error",
    "gamma-deviance",
    "gamma-nloglik",
    "interval-regression-accuracy",
    "logloss",
    "mae",
    "mape",
    "merror",
    "mlogloss",
    "mphe",
    "mse",
    "poisson-nloglik",
    "rmse",
    "rmsle",
    "tweedie-nloglik",
]
OBJECTIVES = [
    "aft_loss_distribution",
    "binary:logistic",
    "binary:logitraw",
    "binary:hinge",
    "count:poisson",
    "multi:softmax",
    "multi:softprob",
    "rank:pairwise",
    "rank:ndcg",
    "rank:map",
    "reg:linear",
    "reg:squarederror",
    "reg:logistic",
    "reg:gamma",
    "reg:pseudohubererror",
    "reg:squaredlogerror",
    "reg:tweedie",
    "survival:aft",
    "survival:cox",
]
UPDATERS = [
    "grow_colmaker",
    "distcol",
    "grow_histmaker",
    "grow_skmaker",
    "sync",
    "refresh",
    "prune",
    "grow_colmaker",
    "distcol",
    "grow_histmaker",
    "grow_colmaker",
    "shotgun",
    "coord_descent",
    "refresh",
    "prune",
]
ALIASES = {
    "learning_rate": "eta",
    "min_split_loss": "gamma",
    "reg_lambda": "lambda",
    "reg_alpha": "alpha",
}


# ----------------------------------------------------------------------------- hyperparameters


class Interval:
    """A numeric range printed as the toolkit prints it: ``[1, +inf)``."""

    def __init__(
        self,
        lo: Optional[float] = None,
        hi: Optional[float] = None,
        lo_open: bool = False,
        hi_open: bool = False,
    ) -> None:
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def __contains__(self, value: Any) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))

    def __str__(self) -> str:
        lo = "(-inf, " if self.lo is None else ("(" if self.lo_open else "[") + str(self.lo) + ", "
        hi = "+inf)" if self.hi is None else str(self.hi) + (")" if self.hi_open else "]")
        return lo + hi


class Check:
    """A range decided by a function (the toolkit's ``range_validator``), printed as its list."""

    def __init__(self, shown: List[str], test: Callable[[Any], bool]) -> None:
        self.shown, self.test = shown, test

    def __contains__(self, value: Any) -> bool:
        return self.test(value)

    def __str__(self) -> str:
        return str(self.shown)


class Spec:
    """One hyperparameter: how it parses, its range and which others its check reads."""

    def __init__(
        self,
        name: str,
        kind: str,
        valid: Any = None,
        depends: Tuple[str, ...] = (),
        required: bool = False,
    ) -> None:
        self.name, self.kind, self.valid, self.depends, self.required = (
            name,
            kind,
            valid,
            depends,
            required,
        )

    def parse(self, value: Any) -> Any:
        if self.kind == "int":
            return int(value)
        if self.kind == "float":
            return float(value)
        if self.kind == "list":
            return value.split(",")
        if self.kind in ("tuple", "nested"):
            return ast.literal_eval(value) if isinstance(value, str) else value
        return value

    def check_range(self, value: Any) -> None:
        if self.valid is None:
            return
        if self.kind == "list":
            if any(v not in self.valid for v in value):
                raise UserError(
                    f"Hyperparameter {self.name}: value {value} not in range {self.valid}"
                )
        elif self.kind in ("tuple", "nested"):
            items = [e for outer in value for e in outer] if self.kind == "nested" else value
            if any(e not in self.valid for e in items):
                raise UserError(
                    f"Hyperparameter {self.name}: value {value} not in range {self.valid}"
                )
        elif value not in self.valid:
            raise UserError(f"Hyperparameter {self.name}: {value} is not in {self.valid}")


def _eval_metric_in_range(metric: str) -> bool:
    if "<function" in metric:
        raise UserError(f"User defined evaluation metric {metric} is not supported yet.")
    if "@" in metric:
        name, threshold = (part.strip() for part in metric.split("@")[:2])
        if name not in ("error", "ndcg", "map"):
            raise UserError(
                f"Metric '{metric}' is not supported. Parameter 'eval_metric' with customized threshold "
                "should be one of these options: 'error', 'ndcg', 'map'."
            )
        try:
            float(threshold)
        except ValueError:
            raise UserError(f"Threshold value 't' in '{name}@t' expects float input.") from None
        return True
    return metric in MAXIMIZE_METRICS + MINIMIZE_METRICS


def _specs() -> Dict[str, Spec]:
    i, f, c = "int", "float", "categorical"
    closed01 = Interval(0, 1)
    specs = [
        Spec("num_round", i, Interval(1), required=True),
        Spec("csv_weights", i, closed01),
        Spec("early_stopping_rounds", i, Interval(1)),
        Spec("booster", c, ["gbtree", "gblinear", "dart"]),
        Spec("verbosity", i, Interval(0, 3)),
        Spec("nthread", i, Interval(1)),
        Spec("eta", f, closed01),
        Spec("gamma", f, Interval(0)),
        Spec("max_depth", i, Interval(0)),
        Spec("min_child_weight", f, Interval(0)),
        Spec("max_delta_step", f, Interval(0)),
        Spec("subsample", f, Interval(0, 1, lo_open=True)),
        Spec("colsample_bytree", f, Interval(0, 1, lo_open=True)),
        Spec("colsample_bylevel", f, Interval(0, 1, lo_open=True)),
        Spec("colsample_bynode", f, Interval(0, 1, lo_open=True)),
        Spec("lambda", f, Interval(0)),
        Spec("alpha", f, Interval(0)),
        Spec(
            "tree_method",
            c,
            Check(
                ["auto", "exact", "approx", "hist", "gpu_hist"],
                lambda v: v in ["auto", "exact", "approx", "hist", "gpu_hist"],
            ),
        ),
        Spec("sketch_eps", f, Interval(0, 1, lo_open=True, hi_open=True)),
        Spec("scale_pos_weight", f, Interval(0, lo_open=True)),
        Spec("updater", "list", UPDATERS, depends=("booster", "process_type")),
        Spec("dsplit", c, ["row", "col"]),
        Spec("refresh_leaf", i, closed01),
        Spec("process_type", c, ["default", "update"]),
        Spec("grow_policy", c, ["depthwise", "lossguide"]),
        Spec("max_leaves", i, Interval(0)),
        Spec("max_bin", i, Interval(0)),
        Spec(
            "predictor",
            c,
            Check(
                ["auto", "cpu_predictor", "gpu_predictor"],
                lambda v: v in ["auto", "cpu_predictor", "gpu_predictor"],
            ),
        ),
        Spec("monotone_constraints", "tuple", [-1, 0, 1], depends=("tree_method",)),
        Spec("interaction_constraints", "nested", Interval(1), depends=("tree_method",)),
        Spec("sample_type", c, ["uniform", "weighted"]),
        Spec("normalize_type", c, ["tree", "forest"]),
        Spec("rate_drop", f, closed01),
        Spec("one_drop", i, closed01),
        Spec("skip_drop", f, closed01),
        Spec("lambda_bias", f, closed01),
        Spec("tweedie_variance_power", f, Interval(1, 2, lo_open=True, hi_open=True)),
        Spec("objective", c, OBJECTIVES, depends=("num_class",)),
        Spec("num_class", i, Interval(2)),
        Spec("base_score", f, Interval(0)),
        Spec("_kfold", i, Interval(2)),
        Spec("_num_cv_round", i, Interval(1)),
        Spec(
            "_tuning_objective_metric",
            c,
            ["validation:" + m for m in MAXIMIZE_METRICS + MINIMIZE_METRICS],
        ),
        Spec(
            "eval_metric",
            "list",
            Check(MAXIMIZE_METRICS + MINIMIZE_METRICS, _eval_metric_in_range),
            depends=("objective",),
        ),
        Spec("seed", i, Interval(-(2**31), 2**31 - 1, lo_open=True, hi_open=True)),
        Spec("num_parallel_tree", i, Interval(1)),
        Spec("save_model_on_termination", c, ["true", "false"]),
        Spec("aft_loss_distribution", c, ["normal", "logistic", "extreme"]),
        Spec("aft_loss_distribution_scale", f, Interval(0)),
        Spec("deterministic_histogram", c, ["true", "false"]),
        Spec("sampling_method", c, ["uniform", "gradient_based"]),
        Spec("prob_buffer_row", i, Interval(1.0, lo_open=True)),
        Spec("use_dask_gpu_training", c, ["true", "false"]),
    ]
    return {s.name: s for s in specs}


def _check_dependencies(name: str, value: Any, deps: Dict[str, Any]) -> None:
    """The container's dependency checks (``dependencies_validator`` functions)."""
    if name == "objective":
        if value in ("multi:softmax", "multi:softprob") and deps.get("num_class") is None:
            raise UserError("Require input for parameter 'num_class' for multi-classification")
    elif name == "eval_metric":
        objective = deps["objective"]  # a KeyError without an objective, as in the container
        if "auc" in value and not any(objective.startswith(t) for t in ("binary:", "rank:")):
            raise UserError(
                "Metric 'auc' can only be applied for classification and ranking problems."
            )
        if "aft-nloglik" in value and objective not in ["survival:aft"]:
            raise UserError(
                "Metric 'aft-nloglik' can only be applied for 'survival:aft' objective."
            )
    elif name == "monotone_constraints":
        if value is not None and deps.get("tree_method") not in ("exact", "hist"):
            raise UserError(
                "monotone_constraints can be used only when the tree_method parameter is set to "
                "either 'exact' or 'hist'."
            )
    elif name == "interaction_constraints":
        if value is not None and deps.get("tree_method") not in ("exact", "hist", "approx"):
            raise UserError(
                "interaction_constraints can be used only when the tree_method parameter is set "
                "to either 'exact', 'hist' or 'approx'."
            )
    elif name == "updater":
        _check_updater(value, deps)


def _check_updater(value: List[str], deps: Dict[str, Any]) -> None:
    tree = [
        "grow_colmaker",
        "distcol",
        "grow_histmaker",
        "grow_skmaker",
        "sync",
        "refresh",
        "prune",
        "grow_quantile_histmaker",
    ]
    build = ["grow_colmaker", "distcol", "grow_histmaker", "grow_quantile_histmaker"]
    if deps.get("booster") == "gblinear":
        if not (len(value) == 1 and value[0] in ["shotgun", "coord_descent"]):
            raise UserError(
                "Linear updater should be one of these options: 'shotgun', 'coord_descent'."
            )
    elif deps.get("process_type") == "update":
        if not all(x in ["refresh", "prune"] for x in value):
            raise UserError(
                "process_type 'update' can only be used with updater 'refresh' and 'prune'"
            )
    else:
        if not all(x in tree for x in value):
            raise UserError(
                "Tree updater should be selected from these options: 'grow_colmaker', "
                "'distcol', 'grow_histmaker', 'grow_skmaker', 'grow_quantile_histmaker', 'sync', "
                "'refresh', 'prune', 'shortgun', 'coord_descent'."
            )
        if sum(1 for x in value if x in build) > 1:
            raise UserError(
                "Only one tree grow plugin can be selected. Choose one from thefollowing: "
                "'grow_colmaker', 'distcol', 'grow_histmaker', 'grow_skmaker'"
            )


def validate_hyperparameters(raw: Dict[str, Any]) -> Dict[str, Any]:
    """Type and check ``raw`` (strings) as the container does; UserError says what is wrong."""
    specs = _specs()
    given = {ALIASES.get(k, k): v for k, v in raw.items()}
    for name, spec in specs.items():
        if spec.required and name not in given:
            raise UserError(f"Missing required hyperparameter: {name}")
    typed = {}  # type: Dict[str, Any]
    for name, value in given.items():
        if name not in specs:
            raise UserError(f"Extraneous hyperparameter found: {name}")
        try:
            typed[name] = specs[name].parse(value)
        except (ValueError, SyntaxError) as exc:
            raise UserError(f"Hyperparameter {name}: could not parse value", exc) from None
    for name, value in typed.items():
        specs[name].check_range(value)
    done = {}  # type: Dict[str, Any]
    pending = list(typed)
    while pending:  # each check sees the hyperparameters it reads, checked first
        for name in pending:
            if all(d in done or d not in typed for d in specs[name].depends):
                deps = {d: done[d] for d in specs[name].depends if d in done}
                _check_dependencies(name, typed[name], deps)
                done[name] = typed[name]
                pending.remove(name)
                break
    return done
