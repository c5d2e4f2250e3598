import threading

from curation.models.cache import ProcessCache


def test_each_key_is_built_once_across_threads_until_discarded():
    cache: ProcessCache[object] = ProcessCache()
    builds = []

    def build():
        builds.append(1)
        return object()

    values = []
    threads = [threading.Thread(target=lambda: values.append(cache.get("spec", build))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and all(v is values[0] for v in values)
    cache.discard(values[0])
    assert cache.get("spec", build) is not values[0] and len(builds) == 2
