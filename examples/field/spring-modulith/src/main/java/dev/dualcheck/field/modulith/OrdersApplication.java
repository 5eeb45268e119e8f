package dev.dualcheck.field.modulith;

import java.net.URI;
import java.net.URISyntaxException;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.scheduling.annotation.EnableScheduling;

/**
 * The orders service of the Spring Modulith field study (README.md).
 *
 * <p>Environment (set by dualcheck's runner): {@code DATABASE_URL}
 * ({@code postgres://user[:password]@host:port/db[?params]}), {@code KAFKA_BOOTSTRAP},
 * {@code TOPIC}, {@code PORT}. A missing or malformed one exits 2 before Spring starts,
 * naming it. The {@code MODULITH_*} switches are read in application.properties.
 *
 * <p>{@code @EnableScheduling}: spring-modulith-moments (part of spring-modulith-starter-core)
 * enables scheduling already; it is declared here too because the Staleness Monitor
 * (StalenessMonitorConfiguration, a SchedulingConfigurer) and {@link Resubmission} need it.
 */
@SpringBootApplication
@EnableScheduling
public class OrdersApplication {

	public static void main(String[] args) {

		Map<String, Object> properties;

		try {
			properties = propertiesFromEnvironment();
		} catch (IllegalArgumentException e) {
			System.err.println("spring-modulith orders service: " + e.getMessage());
			System.exit(2);
			return;
		}

		var application = new SpringApplication(OrdersApplication.class);
		application.setDefaultProperties(properties);
		application.run(args);
	}

	/**
	 * The Spring properties that the runner's variables stand for.
	 */
	static Map<String, Object> propertiesFromEnvironment() {

		List<String> missing = new ArrayList<>();

		for (var name : List.of("DATABASE_URL", "KAFKA_BOOTSTRAP", "TOPIC", "PORT")) {
			var value = System.getenv(name);
			if (value == null || value.isBlank()) {
				missing.add(name);
			}
		}

		if (!missing.isEmpty()) {
			throw new IllegalArgumentException(String.join(", ", missing) + (missing.size() == 1 ? " is" : " are")
					+ " not set; the service needs DATABASE_URL (postgres://user@127.0.0.1:port/db), KAFKA_BOOTSTRAP,"
					+ " TOPIC and PORT (dualcheck's runner sets them)");
		}

		var port = System.getenv("PORT").trim();

		try {
			int p = Integer.parseInt(port);
			if (p < 1 || p > 65535) {
				throw new NumberFormatException();
			}
		} catch (NumberFormatException e) {
			throw new IllegalArgumentException("PORT=" + port + " is not a TCP port");
		}

		Map<String, Object> properties = new LinkedHashMap<>();

		properties.putAll(dataSourceProperties(System.getenv("DATABASE_URL").trim()));
		properties.put("spring.kafka.bootstrap-servers", System.getenv("KAFKA_BOOTSTRAP").trim());
		properties.put("orders.topic", System.getenv("TOPIC").trim());
		properties.put("server.port", port);

		return properties;
	}

	/**
	 * {@code postgres://user[:password]@host[:port]/db[?params]} as {@code spring.datasource.*}: the JDBC URL
	 * {@code jdbc:postgresql://host[:port]/db[?params]}, the user and the password (if any) apart.
	 */
	static Map<String, Object> dataSourceProperties(String url) {

		URI uri;

		try {
			uri = new URI(url);
		} catch (URISyntaxException e) {
			throw new IllegalArgumentException("DATABASE_URL is not a URL: " + e.getMessage());
		}

		var scheme = uri.getScheme();

		if (!"postgres".equals(scheme) && !"postgresql".equals(scheme) || uri.getHost() == null) {
			throw new IllegalArgumentException(
					"DATABASE_URL must be postgres://user@host:port/database (got scheme " + scheme + ")");
		}

		var database = uri.getRawPath() == null ? "" : uri.getRawPath().replaceFirst("^/", "");

		if (database.isEmpty()) {
			throw new IllegalArgumentException("DATABASE_URL names no database");
		}

		var jdbcUrl = new StringBuilder("jdbc:postgresql://").append(uri.getHost());

		if (uri.getPort() != -1) {
			jdbcUrl.append(':').append(uri.getPort());
		}

		jdbcUrl.append('/').append(database);

		if (uri.getRawQuery() != null) {
			jdbcUrl.append('?').append(uri.getRawQuery());
		}

		Map<String, Object> properties = new LinkedHashMap<>();
		properties.put("spring.datasource.url", jdbcUrl.toString());

		var userInfo = uri.getRawUserInfo();

		if (userInfo != null) {
			var colon = userInfo.indexOf(':');
			var user = colon < 0 ? userInfo : userInfo.substring(0, colon);
			properties.put("spring.datasource.username", percentDecode(user));
			if (colon >= 0) {
				properties.put("spring.datasource.password", percentDecode(userInfo.substring(colon + 1)));
			}
		}

		return properties;
	}

	/** Percent-decoding of a URL's user info ({@code +} stays a plus). */
	private static String percentDecode(String raw) {
		return URLDecoder.decode(raw.replace("+", "%2B"), StandardCharsets.UTF_8);
	}
}
