// The orders service of the Watermill field study: the smallest service a
// team would write with Watermill's outbox ("Forwarder") as its documentation
// shows it (watermill docs/content/advanced/forwarder.md and
// _examples/real-world-examples/transactional-events-forwarder).
//
// POST /orders inserts the order and publishes its event through a
// watermill-sql Publisher bound to the same transaction, wrapped by the
// Forwarder's publisher decorator; the Forwarder, running in this process,
// reads the enveloped events back with a watermill-sql Subscriber and
// publishes them to Kafka with a watermill-kafka Publisher.
//
// Environment: DATABASE_URL, KAFKA_BOOTSTRAP, TOPIC, PORT.
package main

import (
	"context"
	stdSQL "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/IBM/sarama"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
)

// The SQL topic the Forwarder listens to. Watermill keeps its messages in the
// table "watermill_events_to_forward" and the Forwarder's position in
// "watermill_offsets_events_to_forward" (DefaultPostgreSQLSchema,
// DefaultPostgreSQLOffsetsAdapter).
const forwarderSQLTopic = "events_to_forward"

// The message metadata the partitioning marshaler reads the Kafka key from
// (watermill docs/content/pubsubs/kafka.md, "Partitioning").
const partitionKeyMetadata = "partition"

var logger = watermill.NewStdLogger(false, false)

type config struct {
	databaseURL string
	brokers     []string
	topic       string
	port        string
}

func configFromEnv() (config, error) {
	var missing []string
	get := func(name string) string {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			missing = append(missing, name)
		}
		return v
	}
	c := config{
		databaseURL: get("DATABASE_URL"),
		topic:       get("TOPIC"),
		port:        get("PORT"),
	}
	for _, b := range strings.Split(get("KAFKA_BOOTSTRAP"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.brokers = append(c.brokers, b)
		}
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("missing environment variable(s): %s (need DATABASE_URL=postgres://..., KAFKA_BOOTSTRAP=host:port[,host:port], TOPIC, PORT)", strings.Join(missing, ", "))
	}
	if _, err := strconv.ParseUint(c.port, 10, 16); err != nil {
		return c, fmt.Errorf("PORT=%q is not a TCP port", c.port)
	}
	return c, nil
}

func main() {
	cfg, err := configFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "watermill-orders:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	db, err := stdSQL.Open("pgx", cfg.databaseURL)
	if err != nil {
		log.Fatalf("watermill-orders: opening the database: %v", err)
	}
	if err := db.PingContext(ctx); err != nil {
		log.Fatalf("watermill-orders: connecting to the database: %v", err)
	}

	// The Forwarder: takes the enveloped messages from the PostgreSQL
	// subscription and pushes them to Kafka.
	sqlSubscriber, err := sql.NewSubscriber(
		sql.BeginnerFromStdSQL(db),
		sql.SubscriberConfig{
			SchemaAdapter:    sql.DefaultPostgreSQLSchema{},
			OffsetsAdapter:   sql.DefaultPostgreSQLOffsetsAdapter{},
			InitializeSchema: true,
		},
		logger,
	)
	if err != nil {
		log.Fatalf("watermill-orders: creating the SQL subscriber: %v", err)
	}

	saramaConfig := kafka.DefaultSaramaSyncPublisherConfig()
	// Kafka 4 brokers refuse the protocol versions of the default (1.0).
	saramaConfig.Version = sarama.V3_6_0_0
	// The default keeps sarama's RequiredAcks = WaitForLocal (acks=1): the
	// leader alone acknowledges. KAFKA_ACKS=all is the durable setting
	// sarama documents ("WaitForAll waits for all in-sync replicas to commit
	// before responding", produce_request.go): the field study's second row.
	switch acks := os.Getenv("KAFKA_ACKS"); acks {
	case "", "1":
	case "all":
		saramaConfig.Producer.RequiredAcks = sarama.WaitForAll
	default:
		log.Fatalf("watermill-orders: KAFKA_ACKS=%q: give 1 (the default) or all", acks)
	}

	kafkaPublisher, err := kafka.NewPublisher(
		kafka.PublisherConfig{
			Brokers: cfg.brokers,
			Marshaler: kafka.NewWithPartitioningMarshaler(func(topic string, msg *message.Message) (string, error) {
				return msg.Metadata.Get(partitionKeyMetadata), nil
			}),
			OverwriteSaramaConfig: saramaConfig,
		},
		logger,
	)
	if err != nil {
		log.Fatalf("watermill-orders: creating the Kafka publisher: %v", err)
	}

	fwd, err := forwarder.NewForwarder(sqlSubscriber, kafkaPublisher, logger, forwarder.Config{
		ForwarderTopic: forwarderSQLTopic,
	})
	if err != nil {
		log.Fatalf("watermill-orders: creating the forwarder: %v", err)
	}

	fwdDone := make(chan error, 1)
	go func() { fwdDone <- fwd.Run(ctx) }()

	// The forwarder's subscription creates watermill's tables
	// (InitializeSchema): serve only once it runs.
	select {
	case <-fwd.Running():
	case err := <-fwdDone:
		log.Fatalf("watermill-orders: the forwarder did not start: %v", err)
	case <-ctx.Done():
		os.Exit(1)
	}

	s := &service{db: db, topic: cfg.topic}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("POST /orders", s.placeOrder)

	addr := net.JoinHostPort("127.0.0.1", cfg.port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("watermill-orders: listening on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: mux}
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(ln) }()
	logger.Info("Orders service listening", watermill.LogFields{
		"addr": addr, "topic": cfg.topic, "forwarder_topic": forwarderSQLTopic,
	})

	select {
	case err := <-fwdDone:
		log.Fatalf("watermill-orders: the forwarder stopped: %v", err)
	case err := <-httpDone:
		log.Fatalf("watermill-orders: the HTTP server stopped: %v", err)
	case <-ctx.Done():
		_ = srv.Close()
		_ = fwd.Close()
		_ = kafkaPublisher.Close()
		_ = db.Close()
	}
}

type service struct {
	db    *stdSQL.DB
	topic string
}

type placeOrderRequest struct {
	OrderID    string `json:"orderId"`
	CustomerID string `json:"customerId"`
	LineNo     int64  `json:"lineNo"`
	Fail       bool   `json:"fail"`
}

// OrderPlaced is the service's own event.
type OrderPlaced struct {
	Type       string `json:"type"`
	OrderID    string `json:"orderId"`
	CustomerID string `json:"customerId"`
	LineNo     int64  `json:"lineNo"`
}

func (s *service) placeOrder(w http.ResponseWriter, r *http.Request) {
	var req placeOrderRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "invalid JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	id, err := strconv.ParseInt(req.OrderID, 10, 64)
	if err != nil {
		http.Error(w, "orderId must be an integer", http.StatusBadRequest)
		return
	}

	eventID, err := s.insertAndPublish(r.Context(), id, req)
	switch {
	case errors.Is(err, errRolledBack):
		http.Error(w, "rolled back on request", http.StatusUnprocessableEntity)
	case errors.Is(err, errNotCommitted):
		// Nothing was committed: the insert (a duplicate id, a lost
		// connection) or the publish failed before COMMIT.
		logger.Error("Order not placed", err, watermill.LogFields{"order_id": req.OrderID})
		http.Error(w, err.Error(), http.StatusConflict)
	case err != nil:
		// COMMIT failed or its answer was lost: the order may be placed.
		logger.Error("Order outcome unknown", err, watermill.LogFields{"order_id": req.OrderID})
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]string{"orderId": req.OrderID, "eventId": eventID})
	}
}

var (
	errNotCommitted = errors.New("not committed")
	errRolledBack   = errors.New("rolled back on request")
)

// insertAndPublish stores the order and publishes OrderPlaced in one
// transaction: the event goes to the forwarder's SQL topic, enveloped with
// its destination, the Kafka topic.
func (s *service) insertAndPublish(ctx context.Context, id int64, req placeOrderRequest) (string, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("%w: begin: %v", errNotCommitted, err)
	}
	rollback := func(cause error) error {
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, stdSQL.ErrTxDone) {
			logger.Error("Rollback failed", rbErr, nil)
		}
		return cause
	}

	if _, err := tx.ExecContext(ctx,
		`INSERT INTO orders (id, customer_id, line_no) VALUES ($1, $2, $3)`,
		id, req.CustomerID, req.LineNo,
	); err != nil {
		return "", rollback(fmt.Errorf("%w: insert: %v", errNotCommitted, err))
	}

	var publisher message.Publisher
	publisher, err = sql.NewPublisher(
		sql.TxFromStdSQL(tx),
		sql.PublisherConfig{
			SchemaAdapter: sql.DefaultPostgreSQLSchema{},
		},
		logger,
	)
	if err != nil {
		return "", rollback(fmt.Errorf("%w: sql publisher: %v", errNotCommitted, err))
	}
	// Decorate the publisher so it wraps the event in an envelope understood
	// by the Forwarder.
	publisher = forwarder.NewPublisher(publisher, forwarder.PublisherConfig{
		ForwarderTopic: forwarderSQLTopic,
	})

	payload, err := json.Marshal(OrderPlaced{
		Type:       "OrderPlaced",
		OrderID:    req.OrderID,
		CustomerID: req.CustomerID,
		LineNo:     req.LineNo,
	})
	if err != nil {
		return "", rollback(fmt.Errorf("%w: %v", errNotCommitted, err))
	}
	msg := message.NewMessage(watermill.NewUUID(), payload)
	msg.Metadata.Set(partitionKeyMetadata, req.CustomerID)

	// Published to the Kafka topic through the decorated SQL publisher.
	if err := publisher.Publish(s.topic, msg); err != nil {
		return "", rollback(fmt.Errorf("%w: publish: %v", errNotCommitted, err))
	}

	if req.Fail {
		return "", rollback(errRolledBack)
	}

	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("commit: %w", err)
	}
	return msg.UUID, nil
}
