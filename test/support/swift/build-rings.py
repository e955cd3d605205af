# Builds one-device rings for a throwaway Swift in a single interpreter (swift-ring-builder costs
# about 0.7 s per call, nine calls for three rings). Arguments: PATH_WITHOUT_SUFFIX:PORT ...
import sys

from swift.common.ring import RingBuilder

for spec in sys.argv[1:]:
    path, port = spec.rsplit(':', 1)
    builder = RingBuilder(10, 1, 1)  # 2^10 partitions, 1 replica, 1 hour min_part_hours
    builder.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': int(port),
                     'device': 'd1', 'weight': 1.0, 'meta': ''})
    builder.rebalance()
    builder.get_ring().save(path + '.ring.gz')
