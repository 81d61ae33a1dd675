from sneakers23.domain.words import counted


def test_a_count_and_its_noun_agree():
    assert counted(1, "pair") == "1 pair" and counted(0, "pair") == "0 pairs" and counted(2, "pair") == "2 pairs"
    assert counted(3, "batch") == "3 batches" and counted(1, "batch") == "1 batch"
    assert counted(12_500, "shopper") == "12,500 shoppers" and counted(2, "person", "people") == "2 people"
