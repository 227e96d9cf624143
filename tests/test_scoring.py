from dataclasses import replace

import numpy as np
import pytest

from fld_train import scoring


def _case():
    """Four samples, two classes. Sample 3 is labelled 0 but both signals say 1."""
    given = np.array([0, 0, 1, 0])
    model = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]])
    knn = np.array([[1.0, 0.0], [0.9, 0.1], [0.2, 0.8], [0.0, 1.0]])
    return given, model, knn


def test_thresholds_are_per_class_mean_self_confidence():
    given, model, knn = _case()
    post = 0.5 * model + 0.5 * knn
    t = scoring.per_class_thresholds(post[np.arange(4), given], given, np.ones(4, bool), 2)
    np.testing.assert_allclose(t, [np.mean(post[[0, 1, 3], 0]), post[2, 1]])


def test_class_without_labelled_samples_is_never_confident():
    t = scoring.per_class_thresholds(np.full(2, 1 / 3), np.array([0, 0]), np.ones(2, bool), 3)
    assert np.isinf(t[1]) and np.isinf(t[2])


def test_flags_the_sample_both_signals_disagree_with():
    ev = scoring.evaluate(*_case(), action="flag")
    np.testing.assert_array_equal(ev.flagged, [False, False, False, True])
    assert ev.suggested_labels[3] == 1
    assert ev.scores[3] == ev.scores.max() and 0.0 <= ev.scores.min() and ev.scores.max() <= 1.0
    np.testing.assert_array_equal(ev.decisions, [scoring.KEEP] * 3 + [scoring.REVIEW])
    np.testing.assert_array_equal(ev.weights, 1.0)


def test_relabel_needs_model_and_neighbours_to_agree():
    given, model, knn = _case()
    ev = scoring.evaluate(given, model, knn, action="relabel")
    assert ev.decisions[3] == scoring.RELABEL
    model[3] = [0.6, 0.4]  # the model now prefers the given label, the neighbours do not
    ev = scoring.evaluate(given, model, knn, action="relabel", model_weight=0.2)
    assert ev.flagged[3] and ev.decisions[3] == scoring.REVIEW and ev.weights[3] == 1.0
    ev = scoring.evaluate(given, model, knn, action="relabel", model_weight=0.2, uncertain_action="downweight")
    assert ev.decisions[3] == scoring.DOWNWEIGHT and ev.weights[3] == pytest.approx(1 - ev.scores[3])


def test_relabel_needs_a_majority_from_each_witness_not_just_the_top_class():
    given = np.array([0, 0, 1, 2, 0])
    model = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.9, 0.0]])
    knn = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.9, 0.1]])
    ev = scoring.evaluate(given, model, knn, action="relabel", max_flag_class_fraction=1.0)
    assert ev.decisions[4] == scoring.RELABEL and ev.suggested_labels[4] == 1
    model[4] = [0.2, 0.45, 0.35]  # still the model's top class, but not half of its belief
    ev = scoring.evaluate(given, model, knn, action="relabel", max_flag_class_fraction=1.0)
    assert ev.flagged[4] and ev.suggested_labels[4] == 1 and ev.decisions[4] == scoring.REVIEW
    np.testing.assert_allclose(ev.signals["model_suggested_prob"][4], 0.45)
    np.testing.assert_allclose(ev.signals["knn_suggested_share"][4], 0.9)


def test_downweight_gives_one_minus_score():
    ev = scoring.evaluate(*_case(), action="downweight")
    assert ev.decisions[3] == scoring.DOWNWEIGHT
    np.testing.assert_allclose(ev.weights[3], 1 - ev.scores[3], rtol=1e-6)
    np.testing.assert_array_equal(ev.weights[:3], 1.0)


def test_unseen_samples_are_neither_flagged_nor_scored():
    given, model, knn = _case()
    seen = np.array([True, True, True, False])
    ev = scoring.evaluate(given, model, knn, seen=seen, action="relabel")
    assert not ev.flagged[3] and ev.scores[3] == 0.0 and ev.decisions[3] == scoring.UNSEEN


def test_bad_arguments_are_named():
    given, model, knn = _case()
    with pytest.raises(ValueError, match="`action` must be one of"):
        scoring.evaluate(given, model, knn, action="delete")
    with pytest.raises(ValueError, match="`model_weight` must be in \\[0.0, 1.0\\], got 2"):
        scoring.evaluate(given, model, knn, model_weight=2)
    with pytest.raises(ValueError, match="`neighbour_dist` must have shape \\(4, 2\\)"):
        scoring.evaluate(given, model, knn[:3])
    with pytest.raises(ValueError, match="outside \\[0, num_classes=2\\)"):
        scoring.evaluate(given + 2, model, knn)


def test_budget_keeps_the_best_scored_changes_overall_and_per_class():
    given = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.95, 0.6, 0.5, 0.4])
    candidates = np.array([1, 1, 1, 0, 1, 1, 1, 0], bool)
    every = np.ones(8, bool)
    keep = scoring.within_budget(candidates, scores, given, 2, max_fraction=1.0,
                                 max_class_fraction=0.5, population=every)
    np.testing.assert_array_equal(np.flatnonzero(keep), [0, 1, 4, 5])  # two per class of four
    keep = scoring.within_budget(candidates, scores, given, 2, max_fraction=0.25,
                                 max_class_fraction=1.0, population=every)
    np.testing.assert_array_equal(np.flatnonzero(keep), [0, 4])  # the two best overall
    assert not scoring.within_budget(candidates, scores, given, 2, max_fraction=0.0,
                                     max_class_fraction=1.0, population=every).any()


def _many_flips():
    """Ten samples of class 0 and ten of class 1; samples 0-5 are labelled 0 but look like 1 (over
    the default flag cap of half a class: the tests below that use it lift the cap)."""
    given = np.array([0] * 10 + [1] * 10)
    model = np.tile([0.9, 0.1], (20, 1))
    model[10:] = [0.1, 0.9]
    model[:6] = [0.1, 0.9]
    knn = model.copy()
    return given, model, knn


def test_relabels_beyond_the_budget_go_to_review():
    given, model, knn = _many_flips()
    ev = scoring.evaluate(given, model, knn, action="relabel", max_change_fraction=1.0,
                          max_class_change_fraction=0.2, max_flag_class_fraction=1.0, uncertain_action="review")
    assert ev.flagged[:6].all()
    assert (ev.decisions == scoring.RELABEL).sum() == 2 and (ev.decisions == scoring.REVIEW).sum() == 4


def test_standing_relabels_do_not_use_the_budget():
    given, model, knn = _many_flips()
    current = given.copy()
    current[:6] = 1  # relabeled at an earlier check
    ev = scoring.evaluate(given, model, knn, action="relabel", current_labels=current,
                          max_change_fraction=0.0, max_class_change_fraction=0.0,
                          max_flag_class_fraction=1.0)
    np.testing.assert_array_equal(ev.decisions[:6], scoring.RELABEL)


def test_a_label_learned_early_and_confidently_is_not_relabeled():
    given, model, knn = _many_flips()
    # sample 9 (given 0): the model leans to 1 but its given-label probability 0.45 still reaches
    # class 0's threshold (0.42: six of ten class-0 samples look like 1); the neighbours say 1
    model[9], knn[9] = [0.45, 0.55], [0.0, 1.0]
    ev = scoring.evaluate(given, model, knn, action="relabel", model_weight=0.05,
                          max_flag_class_fraction=1.0)
    assert ev.decisions[9] == scoring.RELABEL
    ev = scoring.evaluate(given, model, knn, action="relabel", model_weight=0.05,
                          learned_at_first_sight=np.arange(20) == 9, max_flag_class_fraction=1.0,
                          uncertain_action="review")
    assert ev.flagged[9] and ev.decisions[9] == scoring.REVIEW  # fit at first sight: protected
    assert (ev.decisions[:6] == scoring.RELABEL).all()


def test_precision_cut_keeps_the_largest_prefix_meeting_the_target():
    flagged = np.array([True, True, True, True, False])
    p_wrong = np.array([0.9, 0.6, 1.0, 0.7, 0.99])
    # order 2 (1.0), 0 (0.9), 3 (0.7), 1 (0.6): running means 1.0, 0.95, 0.867, 0.8
    np.testing.assert_array_equal(scoring.precision_cut(flagged, p_wrong, 0.95), [True, False, True, False, False])
    np.testing.assert_array_equal(scoring.precision_cut(flagged, p_wrong, 0.5), flagged)
    assert not scoring.precision_cut(flagged, p_wrong, 1.01).any()


def test_target_precision_flags_a_subset_of_the_default_flags():
    rng = np.random.default_rng(0)
    n, c = 400, 5
    given = rng.integers(0, c, n)
    model = rng.dirichlet(np.ones(c), size=n)
    knn = rng.dirichlet(np.ones(c), size=n)
    loose = scoring.evaluate(given, model, knn)
    strict = scoring.evaluate(given, model, knn, target_precision=0.9)
    assert strict.flagged.sum() < loose.flagged.sum()
    assert np.all(loose.flagged[strict.flagged])
    p_wrong = 1 - strict.signals["posterior_given"]
    assert strict.flagged.any() and p_wrong[strict.flagged].mean() >= 0.9
    assert np.all(strict.decisions[loose.flagged & ~strict.flagged] == scoring.KEEP)
    with pytest.raises(ValueError, match="`target_precision` must be"):
        scoring.evaluate(given, model, knn, target_precision=1.5)


def test_flags_are_capped_per_class_best_scored_first():
    # class 1 is rare (4 samples) and its neighbourhood votes for class 0: all four look wrong
    given = np.array([0] * 6 + [1] * 4)
    model = np.array([[0.9, 0.1]] * 6 + [[0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1]])
    knn = np.array([[1.0, 0.0]] * 10)
    uncapped = scoring.evaluate(given, model, knn, max_flag_class_fraction=1.0)
    np.testing.assert_array_equal(uncapped.flagged, [False] * 6 + [True] * 4)
    ev = scoring.evaluate(given, model, knn)  # default cap: half a class
    np.testing.assert_array_equal(ev.flagged, [False] * 8 + [True] * 2)  # the two highest scores
    np.testing.assert_array_equal(ev.signals["over_class_cap"], [0.0] * 6 + [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(ev.decisions[6:8], scoring.KEEP)
    assert ev.scores[6] > 0.5  # the score still says what the signals think
    relabel = scoring.evaluate(given, model, knn, action="relabel", max_flag_class_fraction=0.25)
    assert relabel.flagged.sum() == 1 and not np.any(relabel.decisions[6:9] == scoring.RELABEL)


def test_flag_cap_is_validated():
    with pytest.raises(ValueError, match="max_flag_class_fraction.*1.5"):
        scoring.evaluate(*_case(), max_flag_class_fraction=1.5)


def test_uncertain_relabel_candidates_can_be_downweighted_instead_of_reviewed():
    given, model, knn = _many_flips()
    ev = scoring.evaluate(given, model, knn, action="relabel", max_class_change_fraction=0.2,
                          max_flag_class_fraction=1.0, uncertain_action="downweight")
    assert (ev.decisions == scoring.RELABEL).sum() == 2  # the budget allows two changes in class 0
    over_budget = ev.decisions == scoring.DOWNWEIGHT
    assert over_budget.sum() == 4 and ev.flagged[over_budget].all()
    np.testing.assert_allclose(ev.weights[over_budget], 1 - ev.scores[over_budget], rtol=1e-6)
    np.testing.assert_array_equal(ev.weights[~over_budget], 1.0)
    with pytest.raises(ValueError, match="`uncertain_action` must be one of"):
        scoring.evaluate(given, model, knn, action="relabel", uncertain_action="drop")


def test_an_evaluation_round_trips_through_its_state_dict():
    ev = scoring.evaluate(*_case(), action="downweight", extra_signals={"aum_margin": np.arange(4.0)})
    state = ev.state_dict()
    assert all(isinstance(v, (np.ndarray, int, float)) for v in state.values())  # bool is an int
    back = scoring.Evaluation.from_state_dict(state)
    for name in ("scores", "flagged", "suggested_labels", "decisions", "weights", "thresholds"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ev, name), err_msg=name)
        assert getattr(back, name).dtype == getattr(ev, name).dtype
    assert back.signals.keys() == ev.signals.keys() and back.knn_k == ev.knn_k
    assert (back.flip_concentration, back.flip_asymmetry, back.noise_model) == (
        ev.flip_concentration, ev.flip_asymmetry, ev.noise_model)
    old = {k: v for k, v in state.items() if k not in ("flip_concentration", "flip_asymmetry", "noise_model")}
    assert scoring.Evaluation.from_state_dict(old).noise_model is False
    for name, values in ev.signals.items():
        np.testing.assert_array_equal(back.signals[name], values)
    del state["weights"]
    with pytest.raises(ValueError, match=r"missing \['weights'\]"):
        scoring.Evaluation.from_state_dict(state)


def _graded_flips():
    """Forty samples of class 0 and forty of class 1; samples 0-9 are labelled 0 with posterior
    0.02 on it, so each flag is right with chance 0.98, while class 1 gets 0.99, 0.98, ..., 0.90 of
    it (class 1's threshold is 0.9, so every one is confidently in class 1) and class 2 the rest."""
    given = np.repeat([0, 1], 40)
    model = np.tile([0.9, 0.05, 0.05], (80, 1))
    model[40:] = [0.05, 0.9, 0.05]
    share = 0.99 - 0.01 * np.arange(10)
    model[:10] = np.stack([np.full(10, 0.02), share, 0.98 - share], axis=1)
    return given, model, model.copy(), share


def test_target_precision_keeps_the_relabels_most_likely_right():
    given, model, knn, share = _graded_flips()
    every = scoring.evaluate(given, model, knn, action="relabel", uncertain_action="review")
    np.testing.assert_array_equal(every.decisions[:10], scoring.RELABEL)
    np.testing.assert_allclose(every.signals["posterior_suggested"][:10], share)
    # every flag is right with chance 0.98, so all ten stay flagged; each relabel is right with
    # chance 0.99, 0.98, ...: their running mean is 0.96 after seven (0.99 .. 0.93)
    cut = scoring.evaluate(given, model, knn, action="relabel", uncertain_action="review", target_precision=0.96)
    np.testing.assert_array_equal(cut.flagged, every.flagged)
    np.testing.assert_array_equal(cut.decisions[:7], scoring.RELABEL)
    np.testing.assert_array_equal(cut.decisions[7:10], scoring.REVIEW)  # still flagged, left for review
    np.testing.assert_array_equal(cut.decisions[10:], every.decisions[10:])
    down = scoring.evaluate(given, model, knn, action="relabel", uncertain_action="downweight", target_precision=0.96)
    np.testing.assert_array_equal(down.decisions[7:10], scoring.DOWNWEIGHT)
    np.testing.assert_array_equal(down.decisions[:7], scoring.RELABEL)


def _memorised_pair_flips():
    """Class 0's samples flipped to 1; half of the flips still look like 0, half were memorised (the
    given label is their top class). Ten clean class-1 samples are hard: class 2 is their top class."""
    clean0, clean2 = [[0.8, 0.1, 0.1]] * 140, [[0.1, 0.1, 0.8]] * 200
    clean1, hard1 = [[0.1, 0.8, 0.1]] * 190, [[0.05, 0.4, 0.55]] * 10
    unmemorised, memorised = [[0.85, 0.1, 0.05]] * 30, [[0.45, 0.5, 0.05]] * 30
    q = np.array(clean0 + clean2 + clean1 + hard1 + unmemorised + memorised)
    given = np.repeat([0, 2, 1, 1, 1, 1], [140, 200, 190, 10, 30, 30])
    wrong = np.repeat([False, False, False, False, True, True], [140, 200, 190, 10, 30, 30])
    return given, q, wrong


def test_noise_model_ranking_keeps_the_count_per_class_and_picks_the_likely_flips():
    from fld_train.confident import wrong_label_probability

    given, q, wrong = _memorised_pair_flips()
    margin = scoring.evaluate(given, q, q, max_flag_class_fraction=1.0, ranking="margin")
    noise = scoring.evaluate(given, q, q, max_flag_class_fraction=1.0, ranking="noise_model")
    assert not margin.noise_model and noise.noise_model
    np.testing.assert_array_equal(np.bincount(given[noise.flagged], minlength=3),
                                  np.bincount(given[margin.flagged], minlength=3))
    assert margin.flagged.sum() == 40 and wrong[margin.flagged].mean() == 0.75  # the hard samples in
    assert np.all(wrong[noise.flagged])  # the memorised flips instead of the hard clean samples
    p_wrong, likely = wrong_label_probability(q, given)
    np.testing.assert_allclose(noise.scores, p_wrong)
    np.testing.assert_array_equal(noise.suggested_labels[noise.flagged], likely[noise.flagged])
    np.testing.assert_array_equal(noise.suggested_labels[noise.flagged], 0)  # the flips' source
    np.testing.assert_array_equal(noise.suggested_labels[~noise.flagged], margin.suggested_labels[~noise.flagged])
    np.testing.assert_array_equal(noise.decisions[noise.flagged], scoring.REVIEW)


def test_under_the_noise_model_a_relabel_needs_the_neighbours_majority_not_the_models():
    given, q, wrong = _memorised_pair_flips()
    model, knn = q.copy(), q.copy()
    model[:140] = [0.6, 0.3, 0.1]  # class 0's threshold 0.7, so the memorised flips below are confident
    memorised = np.arange(570, 600)
    knn[memorised] = [1.0, 0.0, 0.0]  # the model holds 0.45 of class 0 (it memorised), the neighbours all of it
    margin = scoring.evaluate(given, model, knn, action="relabel", max_flag_class_fraction=1.0, ranking="margin")
    noise = scoring.evaluate(given, model, knn, action="relabel", max_flag_class_fraction=1.0, ranking="noise_model")
    np.testing.assert_allclose(noise.signals["model_suggested_prob"][memorised], 0.45)
    assert np.all(margin.flagged[memorised]) and np.all(margin.decisions[memorised] == scoring.REVIEW)
    # "auto"'s first switch ranks by the noise model but keeps the majority gate: a second check must agree
    first = scoring.evaluate(given, model, knn, action="relabel", max_flag_class_fraction=1.0)
    assert first.noise_model and np.all(first.decisions[memorised] == scoring.REVIEW)
    auto = scoring.evaluate(given, model, knn, action="relabel", max_flag_class_fraction=1.0, previous=first)
    after_margin = scoring.evaluate(given, model, knn, action="relabel", max_flag_class_fraction=1.0,
                                    previous=margin)  # the check before kept the margin: no trust yet
    np.testing.assert_array_equal(after_margin.decisions, first.decisions)
    np.testing.assert_array_equal(first.flagged, auto.flagged)
    for ev in (noise, auto):
        assert ev.noise_model
        relabeled = ev.decisions == scoring.RELABEL
        np.testing.assert_array_equal(relabeled, wrong)  # every flip, memorised or not; no clean sample
        np.testing.assert_array_equal(ev.suggested_labels[relabeled], 0)
        assert np.all(ev.decisions[530:540] == scoring.REVIEW)  # hard clean samples: not confident in class 2
    knn[memorised] = [0.45, 0.5, 0.05]  # without the neighbours' majority the noise model relabels nothing of them
    noise = scoring.evaluate(given, model, knn, action="relabel", max_flag_class_fraction=1.0, ranking="noise_model")
    assert not np.any(noise.decisions[memorised] == scoring.RELABEL)


def test_auto_ranking_uses_the_noise_model_only_where_the_estimated_flips_are_concentrated():
    given, q, _ = _memorised_pair_flips()
    auto = scoring.evaluate(given, q, q, max_flag_class_fraction=1.0)
    noise = scoring.evaluate(given, q, q, max_flag_class_fraction=1.0, ranking="noise_model")
    assert auto.flip_concentration == 1.0 and auto.flip_asymmetry == 1.0 and auto.noise_model  # all 0 -> 1
    np.testing.assert_array_equal(auto.flagged, noise.flagged)
    np.testing.assert_array_equal(auto.scores, noise.scores)
    strict = scoring.evaluate(given, q, q, max_flag_class_fraction=1.0, target_precision=0.5)
    assert not strict.noise_model  # a precision target keeps the margin's calibrated estimate
    # symmetric flips: each class's wrong labels come from both other classes alike
    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(3), 200)
    given = np.where(rng.random(600) < 0.3, (true + rng.integers(1, 3, 600)) % 3, true)
    q = np.full((600, 3), 0.1)
    q[np.arange(600), true] = 0.8
    auto = scoring.evaluate(given, q, q)
    margin = scoring.evaluate(given, q, q, ranking="margin")
    assert auto.flip_concentration < 0.6 and not auto.noise_model
    np.testing.assert_array_equal(auto.flagged, margin.flagged)
    np.testing.assert_array_equal(auto.scores, margin.scores)
    # two-way flips: classes 0 and 1 swap labels both ways, as a model's own confusions do
    given = np.where((true < 2) & (rng.random(600) < 0.3), 1 - true, true)
    auto = scoring.evaluate(given, q, q)
    assert auto.flip_concentration > 0.9 and abs(auto.flip_asymmetry) < 0.3 and not auto.noise_model


def _symmetric_memorised(rate: float = 0.4, seed: int = 0):
    """Ten classes, ``rate`` of the labels flipped to any other class alike. The model half memorised
    the flips (0.45 on the given label and on the true class); the neighbours all vote the true class."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(10), 100)
    flip = rng.random(true.size) < rate
    given = np.where(flip, (true + rng.integers(1, 10, true.size)) % 10, true)
    return given, *_half_memorised(true, given), flip, true


def _half_memorised(true: np.ndarray, given: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(model, knn)``: the model gives a flipped sample 0.45 on its given label and on its true
    class (0.9 on the true class otherwise); the neighbours all vote the true class."""
    flip, rows = given != true, np.arange(true.size)
    model = np.full((true.size, 10), 0.01)
    model[rows, true] += np.where(flip, 0.45, 0.9)
    model[rows, given] += np.where(flip, 0.45, 0.0)
    knn = np.zeros((true.size, 10))
    knn[rows, true] = 1.0
    return model / model.sum(1, keepdims=True), knn


def test_diffuse_flips_two_checks_in_a_row_turn_on_downweighting():
    given, model, knn, flip, true = _symmetric_memorised()
    model[:50] = np.eye(10)[true[:50]] * 0.9 + 0.01  # fifty the model gives a majority
    first = scoring.evaluate(given, model, knn, action="relabel")  # uncertain_action="auto" by default
    assert 0 < first.flip_concentration <= scoring.DIFFUSE_CONCENTRATION and first.diffuse_flips
    assert not first.noise_model and first.flagged.sum() == flip.sum()
    relabeled = first.decisions == scoring.RELABEL
    assert relabeled.any() and np.all(flip[relabeled]) and not relabeled[50:].any()
    np.testing.assert_array_equal(first.decisions[first.flagged & ~relabeled], scoring.REVIEW)  # one check: no licence
    second = scoring.evaluate(given, model, knn, action="relabel", previous=first)
    np.testing.assert_array_equal(second.decisions == scoring.RELABEL, relabeled)  # the gate is the same
    down = second.decisions == scoring.DOWNWEIGHT
    np.testing.assert_array_equal(down, second.flagged & ~relabeled)
    np.testing.assert_allclose(second.weights[down], 1 - second.scores[down], rtol=1e-6)
    assert np.all(second.weights[~down] == 1)
    review = scoring.evaluate(given, model, knn, action="relabel", previous=first, uncertain_action="review")
    np.testing.assert_array_equal(review.decisions, first.decisions)
    # the same data after a check whose flips were concentrated: no licence
    concentrated = replace(first, flip_concentration=0.6)
    assert not concentrated.diffuse_flips
    np.testing.assert_array_equal(
        scoring.evaluate(given, model, knn, action="relabel", previous=concentrated).decisions, first.decisions)
    flag = scoring.evaluate(given, model, knn, previous=first)  # action="flag" acts on nothing
    assert np.all(flag.weights == 1) and not np.any(flag.decisions == scoring.DOWNWEIGHT)
    # ... or after a check whose flips were below 0.3 but far above what chance spreads them to
    # (as a model's confusions among many classes are): no licence either
    from fld_train.confident import chance_flip_concentration, estimate_joint

    posterior = 0.5 * model + 0.5 * knn  # the default model_weight
    assert first.chance_concentration == pytest.approx(chance_flip_concentration(estimate_joint(posterior, given)))
    clustered = replace(first, chance_concentration=first.flip_concentration / (scoring.DIFFUSE_CHANCE_RATIO + 0.5))
    assert not clustered.diffuse_flips
    np.testing.assert_array_equal(
        scoring.evaluate(given, model, knn, action="relabel", previous=clustered).decisions, first.decisions)


def test_flips_a_model_confuses_both_ways_are_not_diffuse_whatever_came_before():
    given, model, knn, _, _ = _symmetric_memorised()
    licence = scoring.evaluate(given, model, knn, action="relabel")
    true = np.repeat(np.arange(10), 100)
    swap = (true < 2) & (np.random.default_rng(1).random(1000) < 0.45)  # 0 and 1 confused both ways
    given = np.where(swap, 1 - true, true)
    model, knn = _half_memorised(true, given)
    check = scoring.evaluate(given, model, knn, action="relabel", previous=licence)
    assert licence.diffuse_flips and check.flip_concentration > 0.9 and not check.diffuse_flips
    assert check.flagged.sum() == swap.sum() and np.all(check.decisions[check.flagged] == scoring.REVIEW)


def test_no_estimated_flip_is_not_diffuse():
    assert not scoring.Evaluation(*[np.zeros(1)] * 6, flip_concentration=0.0).diffuse_flips
    assert scoring.Evaluation(*[np.zeros(1)] * 6, flip_concentration=0.2).diffuse_flips


def test_diffuse_means_below_0_3_and_near_what_chance_gives():
    assert scoring.is_diffuse(0.2, 0.15)  # 10 classes: chance 0.15, so 0.3 is the bound
    assert not scoring.is_diffuse(0.32, 0.2)
    assert not scoring.is_diffuse(0.2, 0.05)  # 100 classes: chance 0.05, so the bound is 0.1
    assert scoring.is_diffuse(0.08, 0.05)
    assert scoring.is_diffuse(0.2, 0.0)  # chance not known (a checkpoint from before it was kept): 0.3
    assert not scoring.is_diffuse(0.0, 0.05)
    ev = scoring.Evaluation(*[np.zeros(1)] * 6, flip_concentration=0.2, chance_concentration=0.05)
    assert not ev.diffuse_flips
    again = scoring.Evaluation.from_state_dict(ev.state_dict())
    assert again.chance_concentration == 0.05 and not again.diffuse_flips
    old = {k: v for k, v in ev.state_dict().items() if k != "chance_concentration"}
    assert scoring.Evaluation.from_state_dict(old).diffuse_flips  # an old checkpoint keeps the old rule


def test_ranking_is_validated_and_not_combined_with_target_precision():
    with pytest.raises(ValueError, match="`ranking` must be one of \\{'auto', 'margin', 'noise_model'\\}, got 'loss'"):
        scoring.evaluate(*_case(), ranking="loss")
    with pytest.raises(ValueError, match="`target_precision=0.9` needs `ranking='margin'` or 'auto'"):
        scoring.evaluate(*_case(), ranking="noise_model", target_precision=0.9)
    with pytest.raises(TypeError, match="`previous` must be the Evaluation of the check before this one or None, "
                                        "got bool"):
        scoring.evaluate(*_case(), previous=True)


def test_top_per_class_keeps_the_best_scored_of_each_class():
    given = np.array([0, 0, 0, 1, 1, 2])
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.3, 0.7])
    candidates = np.array([True, True, True, True, True, False])
    keep = scoring.top_per_class(candidates, scores, given, np.array([2, 1, 1]))
    np.testing.assert_array_equal(keep, [False, True, True, True, False, False])  # tie: lower index
