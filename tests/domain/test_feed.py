from sneakers23.domain.changes import AvailabilityChanged
from sneakers23.domain.feed import ChangeFeed


def change(n):
    return AvailabilityChanged(item_id=1, product_id=1, available_count=1000 - n, version=n)


def test_a_follower_gets_every_change_once_in_order():
    feed = ChangeFeed()
    epoch, cursor, seen = feed.epoch, feed.cursor, []
    for batch in ([1, 2, 3], [], [4], [5, 6]):
        for n in batch:
            feed.append(change(n))
        read = feed.read(epoch, cursor)
        assert not read.reset
        seen += read.changes
        cursor = read.cursor
    assert seen == [change(n) for n in range(1, 7)]
    assert feed.read(epoch, cursor).changes == ()


def test_a_new_epoch_or_a_lost_cursor_means_start_again():
    feed = ChangeFeed(capacity=3)
    epoch = feed.epoch
    for n in range(1, 6):
        feed.append(change(n))
    assert feed.read(epoch, 1).reset  # 2 fell out of the feed
    assert feed.read(epoch, 2).changes == (change(3), change(4), change(5))
    assert feed.read(epoch, 99).reset  # a cursor from the future
    assert feed.read("another", 5).reset
    feed.new_epoch()
    assert feed.epoch != epoch and feed.cursor == 0
    assert feed.read(epoch, 5).reset
