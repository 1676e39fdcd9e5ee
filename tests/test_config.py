import pytest

from benchkit.config.validation import apply_override, load_experiment, validate_experiment
from benchkit.config.expansion import expand_runs
from benchkit.errors import ConfigError

BASE = {"name": "x", "data": {"format": "synthetic"},
        "models": [{"backbone": "tiny_cnn", "head": {"name": "regression", "loss": "l1"}}]}


def _raw(**changes):
    import copy
    raw = copy.deepcopy(BASE)
    raw.update(changes)
    return raw


def test_misspelled_top_level_key_names_file_key_and_closest(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\ndata: {format: synthetic}\nmodels: [{backbone: tiny_cnn, head: regression}]\nseds: [1]\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    message = str(err.value)
    assert str(path) in message and "'seds'" in message and "did you mean 'seeds'" in message
    assert err.value.exit_code == 2


def test_misspelled_nested_key_gives_full_path():
    with pytest.raises(ConfigError, match=r"'train\.optimizer\.weight_decy'.*'weight_decay'"):
        validate_experiment(_raw(train={"optimizer": {"weight_decy": 0.1}}))


def test_misspelled_key_in_model_train_override():
    with pytest.raises(ConfigError, match=r"models\.0\.train\.epoch'.*'epochs'"):
        validate_experiment(_raw(models=[{"backbone": "tiny_cnn", "head": "regression", "train": {"epoch": 2}}]))


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        validate_experiment(_raw(train={"batch_size": "many"}))


def test_early_stopping_can_monitor_the_loss_and_exactly_the_metrics_benchkit_computes():
    from benchkit.config import MONITORS
    from benchkit.evaluation.metrics import HIGHER_IS_BETTER
    assert sorted(MONITORS) == sorted(["loss", *HIGHER_IS_BETTER])


def test_misspelled_early_stopping_monitor_is_refused_naming_the_key_and_the_metrics():
    with pytest.raises(ConfigError, match=r"'train\.early_stopping\.monitor'.*'nl'.*loss, acc.*nll") as err:
        validate_experiment(_raw(train={"early_stopping": {"monitor": "nl"}}))
    assert err.value.exit_code == 2
    assert validate_experiment(_raw(train={"early_stopping": {"monitor": "nll"}}))


def test_root_required_for_formats_that_read_files_and_unknown_formats_listed():
    from benchkit.data.reading import check_data_config
    with pytest.raises(ConfigError, match="data.root is required for format 'roboflow_csv'"):
        check_data_config(validate_experiment(_raw(data={"format": "roboflow_csv"})).data)
    check_data_config(validate_experiment(_raw()).data)  # synthetic: drawn, no root
    with pytest.raises(ConfigError, match=r"data.format: unknown dataset format 'csvv'; did you mean 'csv'.*"
                                          r"\(known: csv, .*imagefolder, medmnist_npz, roboflow_csv, synthetic"):
        expand_runs(validate_experiment(_raw(data={"format": "csvv", "root": "x"})))


def test_overrides_parse_yaml_values_and_wildcards():
    raw = _raw()
    apply_override(raw, "train.epochs=3")
    apply_override(raw, "models.*.backbone.pretrained=false")
    apply_override(raw, "seeds=[1, 2]")
    config = validate_experiment(raw)
    assert config.train.epochs == 3 and config.seeds == [1, 2]
    assert config.models[0].backbone.pretrained is False


@pytest.mark.parametrize("item", ["train.epochs", "=3", "models.5.head=coral"])
def test_bad_overrides_are_config_errors(item):
    with pytest.raises(ConfigError):
        apply_override(_raw(), item)


def test_models_times_seeds_are_runs_with_readable_ids():
    config = validate_experiment(_raw(
        models=[{"backbone": "tiny_cnn", "head": "regression"}, {"backbone": "tiny_cnn", "head": "softmax"}],
        seeds=[1, 2]))
    ids = [r.run_id for r in expand_runs(config)]
    assert ids == ["tiny_cnn-regression__s1", "tiny_cnn-regression__s2",
                   "tiny_cnn-softmax__s1", "tiny_cnn-softmax__s2"]


def test_grid_is_a_cartesian_product_with_grid_columns():
    config = validate_experiment(_raw(grid={"backbone.freeze": [0, 1, "all"], "backbone.dropout": [0.0, 0.5]}))
    runs = expand_runs(config)
    assert len(runs) == 6
    assert runs[0].grid == {"freeze": 0, "dropout": 0.0}
    assert runs[-1].run_id == "tiny_cnn-regression__freeze=all__dropout=0.5__s0"
    assert runs[-1].model.backbone.freeze == "all" and runs[-1].model.backbone.dropout == 0.5


def test_model_train_overrides_merge_into_recipe():
    config = validate_experiment(_raw(train={"epochs": 7, "optimizer": {"lr": 0.1}},
                                      models=[{"backbone": "tiny_cnn", "head": "regression",
                                               "train": {"optimizer": {"lr": 0.5}}}]))
    run = expand_runs(config)[0]
    assert run.train.epochs == 7 and run.train.optimizer.lr == 0.5


def test_duplicate_run_ids_are_refused():
    with pytest.raises(ConfigError, match="share the id"):
        expand_runs(validate_experiment(_raw(models=[BASE["models"][0], BASE["models"][0]])))


def test_group_kfold_expands_folds():
    config = validate_experiment(_raw(data={"format": "synthetic", "split": "group_kfold", "folds": 3}))
    assert [r.fold for r in expand_runs(config)] == [0, 1, 2]


def test_grid_over_data_split_puts_official_and_folds_side_by_side():
    config = validate_experiment(_raw(data={"format": "synthetic", "folds": 3},
                                      grid={"data.split": ["official", "group_kfold"]}))
    runs = expand_runs(config)
    assert [(r.split, r.fold) for r in runs] == [("official", None), ("group_kfold", 0), ("group_kfold", 1),
                                                 ("group_kfold", 2)]
    assert runs[0].data.split == "official" and runs[1].data.split == "group_kfold"
    assert "split" not in runs[1].grid and runs[1].run_id.endswith("fold0__s0")


def test_bad_grid_key_is_named():
    with pytest.raises(ConfigError, match="grid key 'bakbone.freeze'"):
        expand_runs(validate_experiment(_raw(grid={"bakbone.freeze": [0, 1]})))
