"""projects/benchmarks/pretrain_benchmark.py: the within-round ratios of the paired runs."""
from projects.benchmarks import pretrain_benchmark


def test_paired_ratios_are_within_round():
    runs = {'a': [dict(kind='ours', images_per_s=2.0, peak_rss_gib=1.0),
                  dict(kind='ours', images_per_s=1.0, peak_rss_gib=1.0)],
            'ref': [dict(kind='reference', images_per_s=1.0, peak_rss_gib=2.0),
                    dict(kind='reference', images_per_s=0.5, peak_rss_gib=2.0)]}
    (row,) = pretrain_benchmark.ratio_table(runs)
    assert (row['run'], row['against'], row['rounds']) == ('a', 'ref', 2)
    assert row['img_per_s_ratio'] == 2.0 and row['peak_rss_ratio'] == 0.5
