"""``gantrix check``: findings, the composed tricks, exit codes, and every user-error path."""
DEFAULT_NOTE = "note: no optimizer trick: the core uses the default Adam"


def lines(result):
    return result.stdout.splitlines()


def test_a_sound_composition_exits_0(gantrix):
    result = gantrix("check", "wgan", "gradient-penalty:weight=5", "n-critic:5", "adam:beta1=0")
    assert result.exit_code == 0, result.output
    assert lines(result) == [
        "tricks: wgan gradient-penalty:weight=5.0 n-critic adam:beta1=0.0",
        "ok: 0 errors, 0 warnings, 0 notes",
    ]


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
    assert lines(result)[0] == ("note: [gradient-penalty + weight-clip] gradient-penalty replaces the "
                                "recipe's weight-clip: a gradient penalty enforces the Lipschitz constraint "
                                "that weight clipping only approximates, without clipping's capacity loss and "
                                "exploding or vanishing gradients (Gulrajani et al. 2017, Improved Training of "
                                "Wasserstein GANs, §3)")
    assert "tricks: wgan rmsprop n-critic:n=3 gradient-penalty" in lines(result)


def test_a_user_loss_replaces_the_recipe_loss(gantrix):
    result = gantrix("check", "-r", "wgan-gp", "hinge")
    assert result.exit_code == 0
    assert "note: [hinge + wgan] hinge replaces the recipe's loss wgan" in lines(result)


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
    assert lines(result)[0].startswith("tricks: wgan gradient-penalty:weight=5.0 n-critic adam:")
    assert lines(result)[0].endswith(" ema")


def test_nothing_to_check(gantrix, user_error):
    user_error(gantrix("check"), "nothing to check", "--recipe NAME", "--config FILE.toml")


def test_unknown_trick_suggests(gantrix, user_error):
    user_error(gantrix("check", "wgan", "gradient-penatly"),
                      "unknown trick 'gradient-penatly'; did you mean 'gradient-penalty'?")


def test_unknown_recipe_suggests(gantrix, user_error):
    user_error(gantrix("check", "--recipe", "wgangp"), "unknown recipe 'wgangp'; did you mean")


def test_bad_parameter_value_names_parameter_value_and_range(gantrix, user_error):
    user_error(gantrix("check", "wgan", "gradient-penalty:weight=-1"),
                      "gradient-penalty: parameter 'weight' got -1.0; allowed: float in [0, inf)")
    user_error(gantrix("check", "wgan", "n-critic:many"),
                      "n-critic: parameter 'n' got 'many'; allowed: int in [1, inf)")


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
                      "weight-clip: parameter 'c' got 0.0; allowed: float in (0, inf)")
