//! The test broker: topics, producing, reading back, the group's committed offsets.

use super::*;

/// The broker address exported by scripts/services.sh.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run the tests with scripts/test.sh, which starts a Kafka-protocol broker and exports it",
    )
}

/// A client configuration for the test broker.
pub fn test_broker() -> ClientConfig {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .clone()
}

/// Creates topics (name, partitions) on the test broker.
pub async fn create_topics(topics: &[(&str, i32)]) {
    create_topics_on(&test_broker(), topics).await
}

/// Creates topics (name, partitions) on the cluster `client` reaches.
pub async fn create_topics_on(client: &ClientConfig, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = client.create().expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .expect("create topics")
    {
        result.expect("topic created");
    }
}

/// Produces (key, payload) records and waits for every acknowledgement.
pub async fn produce(topic: &str, records: &[(String, Vec<u8>)]) {
    produce_on(&test_broker(), topic, records).await
}

/// [`produce`] to the cluster `client` reaches.
pub async fn produce_on(client: &ClientConfig, topic: &str, records: &[(String, Vec<u8>)]) {
    let producer: FutureProducer = client
        .clone()
        .set("linger.ms", "20")
        .set("message.max.bytes", "10000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut pending = Vec::with_capacity(records.len());
    for (key, payload) in records {
        let record = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(payload.as_slice());
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    for d in pending {
        d.await.expect("delivery future").expect("delivered");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub timestamp: Option<i64>,
    pub headers: BTreeMap<String, String>,
}

/// Reads every record of `topic` present now (all partitions, from the
/// beginning, until each reports end-of-partition: Tansu under-reports end
/// offsets, so counting up to them would stop early).
pub fn read_all(topic: &str) -> Vec<ReadRecord> {
    read_all_on(&test_broker(), topic)
}

/// [`read_all`] from the cluster `client` reaches.
pub fn read_all_on(client: &ClientConfig, topic: &str) -> Vec<ReadRecord> {
    use rdkafka::error::KafkaError;
    use rdkafka::message::Headers;
    let consumer: BaseConsumer<engine::ConsumerLogs> = client
        .clone()
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(engine::ConsumerLogs::default())
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while at_end.len() < partitions.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} took over 120 s"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(ReadRecord {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                timestamp: m.timestamp().to_millis(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The candles of a derived topic by (symbol, window_start), and how many
/// records it holds: at least once, so a candle may come several times, but
/// each time the same record (key, timestamp = window end, value).
pub fn topic_candles(topic: &str) -> (usize, BTreeMap<(String, i64), serde_json::Value>) {
    topic_candles_on(&test_broker(), topic)
}

/// [`topic_candles`] from the cluster `client` reaches.
pub fn topic_candles_on(
    client: &ClientConfig,
    topic: &str,
) -> (usize, BTreeMap<(String, i64), serde_json::Value>) {
    let mut candles: BTreeMap<(String, i64), serde_json::Value> = BTreeMap::new();
    let records = read_all_on(client, topic);
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let key = (
            v["symbol"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        assert_eq!(r.timestamp, v["window_end"].as_i64(), "{key:?}: timestamp");
        assert_eq!(r.key.as_deref(), Some(key.0.as_bytes()), "{key:?}: key");
        if let Some(before) = candles.insert(key.clone(), v.clone()) {
            assert_eq!(before, v, "{key:?}: a replayed candle differs");
        }
    }
    (records.len(), candles)
}

/// Offsets the group has committed on `topic`, summed over partitions.
pub fn committed(topic: &str, group: &str) -> i64 {
    committed_partitions(topic, group)
        .iter()
        .map(|(offset, _)| offset)
        .sum()
}

/// The group's committed offset and its metadata, per partition of `topic`
/// that has one.
pub fn committed_partitions(topic: &str, group: &str) -> Vec<(i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .unwrap();
    // Read while jobs run on a busy machine: a look-up the broker fails
    // once (a transport hiccup under load) is tried again before the test fails.
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .or_else(|_| consumer.fetch_metadata(Some(topic), Duration::from_secs(10)))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map(|c| {
            c.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    rdkafka::Offset::Offset(n) => Some((n, e.metadata().to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}
