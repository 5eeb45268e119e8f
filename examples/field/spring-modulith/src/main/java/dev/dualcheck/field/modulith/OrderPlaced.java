package dev.dualcheck.field.modulith;

import java.util.UUID;

import org.springframework.modulith.events.Externalized;

/**
 * The event published in the order's transaction. {@code @Externalized} selects it for externalization
 * (events.adoc, "Externalizing Events", step 2); its topic and key come from
 * {@link ExternalizationConfiguration} because the topic is only known at run time ({@code TOPIC}).
 *
 * <p>Spring Modulith stores it in {@code event_publication.serialized_event} (JacksonEventSerializer) and sends it
 * to Kafka serialized by Jackson as well ({@code ByteArrayJacksonJsonMessageConverter}):
 * {@code {"eventId":"…","orderId":"17","customerId":"k3","lineNo":5}} (key order as Jackson writes it).
 *
 * @param eventId made inside the order's transaction: the same on every send of this event (a resubmission
 *          deserializes the stored event), so it is the id to deduplicate on.
 * @param orderId the order id as the client sent it (a string of digits; dualcheck's op id).
 * @param customerId the Kafka record key.
 * @param lineNo dualcheck's seq.
 */
@Externalized
public record OrderPlaced(UUID eventId, String orderId, String customerId, long lineNo) {}
