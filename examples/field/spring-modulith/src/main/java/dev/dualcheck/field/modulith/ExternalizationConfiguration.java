package dev.dualcheck.field.modulith;

import java.util.Map;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.core.env.Environment;
import org.springframework.modulith.events.EventExternalizationConfiguration;
import org.springframework.modulith.events.RoutingTarget;

/**
 * "Programmatic Event Externalization Configuration" (events.adoc, section {@code externalization.api}), as the
 * reference documentation shows it: select the events annotated {@code @Externalized}, add headers, route.
 *
 * <ul>
 * <li>route: the target is the Kafka topic and the key the record key ("The logical routing key will be used as
 * Kafka's topic and message key", section {@code externalization.infrastructure}); {@code route(…)} builds the full
 * {@link RoutingTarget} ("a full RoutingKey can be produced for individual events by using the general route(…)
 * method"), here {@code $TOPIC} and the customer id;</li>
 * <li>headers: {@code event_id} = the event's id ("For Kafka and AMQP, developers can also add headers to the
 * message to be published"); Spring Kafka writes a String header as its UTF-8 bytes;</li>
 * <li>{@code spring.modulith.events.externalization.serialize-externalization}: Spring Modulith reads it only in
 * the {@code EventExternalizationConfiguration} it declares itself when the application declares none
 * (EventExternalizationAutoConfiguration); with this bean it would be ignored, so it is read here the same way
 * and handed to {@code serializeExternalization(…)}.</li>
 * </ul>
 */
@Configuration(proxyBeanMethods = false)
class ExternalizationConfiguration {

	static final String SERIALIZE = "spring.modulith.events.externalization.serialize-externalization";

	@Bean
	EventExternalizationConfiguration eventExternalizationConfiguration(@Value("${orders.topic}") String topic,
			Environment environment) {

		var router = EventExternalizationConfiguration.externalizing()
				.select(EventExternalizationConfiguration.annotatedAsExternalized())
				.headers(OrderPlaced.class, event -> Map.of("event_id", event.eventId().toString()))
				.route(OrderPlaced.class, event -> RoutingTarget.forTarget(topic).andKey(event.customerId()));

		var serialize = environment.getProperty(SERIALIZE, Boolean.class);

		if (serialize != null) {
			router = router.serializeExternalization(serialize);
		}

		return router.build();
	}
}
