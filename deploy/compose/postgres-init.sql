-- One database per service: no service can read another's tables.
CREATE DATABASE identity;
CREATE DATABASE catalog;
CREATE DATABASE inventory;
CREATE DATABASE payments;
CREATE DATABASE cart;
CREATE DATABASE orders;
CREATE DATABASE notifications;
