"""``gantrix check``: findings, the composed tricks, exit codes, and every user-error path."""
DEFAULT_NOTE = "note: no optimizer trick: the core uses the default Adam"
NO_MODELS = ("models: not checked: the model checks need --data (what gantrix train will get: "
             "ring8, digits, an image folder, ...)")


def lines(result):
    return result.stdout.splitlines()


def test_a_sound_composition_exits_0(gantrix):
    result = gantrix("check", "wgan", "gradient-penalty:weight=5", "n-critic:5", "adam:beta1=0")
    assert result.exit_code == 0, result.output
    assert lines(result) == [
        "tricks: wgan gradient-penalty:weight=5.0 n-critic adam:beta1=0.0",
        NO_MODELS,
        "ok: 0 errors, 0 warnings, 0 notes",
    ]


def test_wgan_without_a_lipschitz_constraint_warns(gantrix):
    result = gantrix("check", "wgan", "n-critic:5", "adam:beta1=0")
    assert result.exit_code == 0, result.output
    assert lines(result)[0].startswith("warning: [wgan] wgan requires lipschitz-constraint: ")
    assert "(add one of: dragan, gradient-penalty, spectral-norm, weight-clip)" in lines(result)[0]
    assert "Arjovsky" in lines(result)[0] and "Gulrajani" in lines(result)[0]
    assert lines(result)[-1] == "ok: 0 errors, 1 warning, 0 notes"


def test_trick_options_as_in_train(gantrix):
    result = gantrix("check", "wgan", "--trick", "gradient-penalty:weight=5", "-t", "n-critic:5",
                     "--recipe", "wgan-gp")
    assert result.exit_code == 0, result.output
    assert lines(result)[:2] == [
        "note: [gradient-penalty] your weight=5.0 replaces the recipe's weight=10.0",
        "tricks: wgan gradient-penalty:weight=5.0 n-critic adam:lr=0.0001,beta1=0.0,beta2=0.9"]
    assert gantrix("check", "-t", "hinge").stdout == gantrix("check", "hinge").stdout


def test_a_recipe_named_as_a_trick_points_to_recipe(gantrix, user_error):
    user_error(gantrix("check", "wgan-gp", "ema"),
               "unknown trick 'wgan-gp': 'wgan-gp' is a recipe; start from it with --recipe wgan-gp")
    assert "did you mean" not in gantrix("check", "wgan-gp", "ema").stderr


def test_a_trick_of_a_disabled_plugin_names_the_plugin(gantrix, user_error, monkeypatch, fresh_registry):
    monkeypatch.setenv("GANTRIX_DISABLE_PLUGINS", "penalties")
    user_error(gantrix("check", "--recipe", "wgan-gp"),
               "recipe 'wgan-gp': unknown trick 'gradient-penalty': no loaded plugin provides it; "
               "not loaded: plugin 'penalties' (gantrix 0.1.0), disabled by GANTRIX_DISABLE_PLUGINS")


def test_a_trick_no_plugin_provides(gantrix, user_error, tmp_path):
    path = tmp_path / "old-run.toml"
    path.write_text('tricks = ["wgan", "zero-gp"]\n')
    user_error(gantrix("check", "--config", str(path)),
               f"{path}: unknown trick 'zero-gp': no installed plugin provides it (is its plugin "
               f"installed? gantrix list shows what is)")


def test_model_findings_need_data(gantrix):
    without = gantrix("check", "cgan", "hinge")
    assert without.exit_code == 0 and lines(without)[-2] == NO_MODELS
    result = gantrix("check", "cgan", "hinge", "--data", "ring8")
    assert result.exit_code == 1, result.output
    assert lines(result)[0].startswith("error: [cgan] conditioning on class labels needs labelled data")
    assert lines(result).count(lines(result)[0]) == 1  # found in G and D, printed once
    assert lines(result)[-2:] == ["models: built for ring8 (2,) and checked: errors found (above)",
                                  "not runnable: 1 error, 0 warnings, 1 note"]


def test_model_warnings_with_data(gantrix):
    result = gantrix("check", "smaller-generator", "hinge", "-d", "digits")
    assert result.exit_code == 0, result.output
    assert lines(result)[0].startswith("warning: [smaller-generator] the generator has ")
    assert lines(result)[-2:] == [
        "models: built for digits (1, 8, 8) and checked: generator ConvGenerator, critic ConvCritic",
        "ok: 0 errors, 1 warning, 1 note"]


def test_data_applies_the_recipe_table_for_its_kind(gantrix):
    result = gantrix("check", "--recipe", "wgan-gp", "--data", "ring8")
    assert result.exit_code == 0, result.output
    assert lines(result) == [
        "tricks: wgan gradient-penalty:weight=0.1 n-critic adam:lr=0.001,beta2=0.9 lr-decay",
        "models: built for ring8 (2,) and checked: generator VectorGenerator, critic VectorCritic",
        "ok: 0 errors, 0 warnings, 0 notes"]


def test_data_from_a_tensor_file(gantrix, tmp_path):
    import torch

    path = tmp_path / "points.pt"
    torch.save(torch.randn(64, 3), path)
    result = gantrix("check", "hinge", "--data", str(path))
    assert result.exit_code == 0, result.output
    assert "models: built for points.pt (3,) and checked: " in result.stdout


def test_models_are_not_built_past_composition_errors(gantrix):
    result = gantrix("check", "wgan", "hinge", "--data", "ring8")
    assert result.exit_code == 1
    assert "models: not built: the composition has errors" in lines(result)


def test_unusable_data_is_a_user_error(gantrix, user_error, tmp_path):
    user_error(gantrix("check", "hinge", "--data", "ring9"), "data 'ring9' is neither a built-in data set")


def test_the_default_optimizer_is_noted(gantrix):
    result = gantrix("check", "hinge")
    assert result.exit_code == 0
    assert lines(result)[0].startswith(DEFAULT_NOTE)
    assert lines(result)[-1] == "ok: 0 errors, 0 warnings, 1 note"


def test_warnings_only_exit_0(gantrix):
    result = gantrix("check", "wgan", "weight-clip", "adam")
    assert result.exit_code == 0, result.output
    assert any(line.startswith("warning: [weight-clip + adam]") for line in lines(result))
    assert lines(result)[-1] == "ok: 0 errors, 1 warning, 0 notes"


def test_two_losses_exit_1(gantrix):
    result = gantrix("check", "wgan", "hinge")
    assert result.exit_code == 1
    assert lines(result)[0] == ("error: [wgan + hinge] more than one loss; a composition trains "
                                "with exactly one adversarial loss (remove all but one)")
    assert "tricks: wgan hinge" in lines(result)
    assert lines(result)[-1].startswith("not runnable: 1 error")


def test_missing_loss_exit_1(gantrix):
    result = gantrix("check", "gradient-penalty", "adam")
    assert result.exit_code == 1
    assert lines(result)[0].startswith("error: no loss: add exactly one of ")
    assert "wgan" in lines(result)[0]


def test_clipping_and_a_penalty_named_together_exit_1(gantrix):
    result = gantrix("check", "wgan", "weight-clip", "gradient-penalty", "rmsprop")
    assert result.exit_code == 1
    assert lines(result)[0].startswith("error: [gradient-penalty + weight-clip] gradient-penalty replaces weight-clip")


def test_a_recipe(gantrix):
    result = gantrix("check", "--recipe", "wgan")
    assert result.exit_code == 0, result.output
    assert lines(result)[0] == "tricks: wgan weight-clip rmsprop n-critic"


def test_user_tricks_added_to_a_recipe_replace_and_override(gantrix):
    result = gantrix("check", "--recipe", "wgan", "gradient-penalty", "n-critic:3")
    assert result.exit_code == 0, result.output
    assert "note: [n-critic] your n=3 replaces the recipe's n=5" in lines(result)
    assert lines(result)[1] == ("note: [gradient-penalty + weight-clip] gradient-penalty replaces the "
                                "recipe's weight-clip: a gradient penalty enforces the Lipschitz constraint "
                                "that weight clipping only approximates, without clipping's capacity loss and "
                                "exploding or vanishing gradients (Gulrajani et al. 2017, Improved Training of "
                                "Wasserstein GANs, §3)")
    assert "tricks: wgan rmsprop n-critic:n=3 gradient-penalty" in lines(result)


def test_a_user_loss_replaces_the_recipe_loss(gantrix):
    result = gantrix("check", "-r", "wgan-gp", "hinge")
    assert result.exit_code == 0
    assert "note: [hinge + wgan] hinge replaces the recipe's loss wgan" in lines(result)


def test_a_command_line_trick_overrides_a_config_file(gantrix, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('recipe = "dcgan"\ntricks = [{ name = "adam", lr_d = 1e-4 }]\n')
    result = gantrix("check", "--config", str(path), "--trick", "hinge", "--trick", "ttur")
    assert result.exit_code == 0, result.output
    assert "note: [hinge + nonsaturating] hinge replaces the recipe's loss nonsaturating" in lines(result)
    assert any(line.startswith("note: [ttur + adam] ttur replaces the config file's adam")
               for line in lines(result))


def test_a_batchnorm_critic_under_a_gradient_penalty_exit_1(gantrix):
    result = gantrix("check", "--recipe", "wgan-gp", "dcgan")
    assert result.exit_code == 1
    assert lines(result)[0].startswith("error: [gradient-penalty + dcgan] BatchNorm in the critic")
    assert gantrix("check", "--recipe", "wgan-gp", "dcgan:critic_norm=layer").exit_code == 0


def test_a_config_file(gantrix, tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('recipe = "wgan-gp"\ntricks = [{ name = "gradient-penalty", weight = 5 }]\n'
                    "[train]\nsteps = 10\n")
    result = gantrix("check", "--config", str(path), "ema")
    assert result.exit_code == 0, result.output
    assert lines(result)[0] == ("note: [gradient-penalty] the config file's weight=5 replaces the "
                                "recipe's weight=10.0")
    assert lines(result)[1].startswith("tricks: wgan gradient-penalty:weight=5.0 n-critic adam:")
    assert lines(result)[1].endswith(" ema")


def test_nothing_to_check(gantrix, user_error):
    user_error(gantrix("check"), "nothing to check", "--recipe NAME", "--config FILE.toml")


def test_unknown_trick_suggests(gantrix, user_error):
    user_error(gantrix("check", "wgan", "gradient-penatly"),
                      "unknown trick 'gradient-penatly'; did you mean 'gradient-penalty'?")


def test_unknown_recipe_suggests(gantrix, user_error):
    user_error(gantrix("check", "--recipe", "wgangp"), "unknown recipe 'wgangp'; did you mean")


def test_bad_parameter_value_names_parameter_value_and_range(gantrix, user_error):
    user_error(gantrix("check", "wgan", "gradient-penalty:weight=-1"),
                      "gradient-penalty: parameter 'weight' got -1.0; allowed: finite float in [0, 10000]")
    user_error(gantrix("check", "wgan", "n-critic:many"),
                      "n-critic: parameter 'n' got 'many'; allowed: int in [1, 100]")


def test_unknown_parameter_suggests(gantrix, user_error):
    user_error(gantrix("check", "wgan", "gradient-penalty:wieght=5"),
                      "unknown parameter of gradient-penalty 'wieght'; did you mean 'weight'?")


def test_bad_toml_names_the_file(gantrix, user_error, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("tricks = [\n")
    user_error(gantrix("check", "--config", str(path)), f"{path} is not valid TOML")


def test_missing_config_file(gantrix, user_error, tmp_path):
    user_error(gantrix("check", "--config", str(tmp_path / "nope.toml")),
                      f"config file not found: {tmp_path / 'nope.toml'}")


def test_unknown_config_key(gantrix, user_error, tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('trick = ["wgan"]\n')
    user_error(gantrix("check", "-c", str(path)), f"{path}: unknown key(s) trick; allowed:")


def test_bad_parameter_in_a_config_file(gantrix, user_error, tmp_path):
    path = tmp_path / "neg.toml"
    path.write_text('tricks = ["wgan", { name = "weight-clip", c = 0 }]\n')
    user_error(gantrix("check", "-c", str(path)),
                      "weight-clip: parameter 'c' got 0.0; allowed: finite float in (0, 10]")


def test_check_for_several_processes(gantrix, user_error):
    """--nproc N: what N processes cannot do as one (BatchNorm, minibatch statistics), and a
    global batch they cannot share, before any process starts."""
    result = gantrix("check", "-r", "dcgan", "-t", "minibatch-stddev", "-d", "digits",
                     "--nproc", "4")
    assert result.exit_code == 0, result.output
    assert "each of the 4 processes sees its own 1/4 of the batch" in result.output
    assert "the generator has BatchNorm layers" in result.output
    assert "processes" not in gantrix("check", "-r", "dcgan", "-d", "digits").output
    result = gantrix("check", "-r", "wgan-gp", "-d", "ring8", "--nproc", "3")
    assert result.exit_code == 1 and "it must be a multiple of 3" in result.output
    user_error(gantrix("check", "-r", "wgan-gp", "--nproc", "2"), "give --data too")
    user_error(gantrix("check", "-r", "wgan-gp", "--nproc", "0"), "--nproc must be at least 1")
