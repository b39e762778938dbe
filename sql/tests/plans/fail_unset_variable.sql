-- fail: plans/fail_unset_variable.sql:3: environment variable `NOT_SET_ANYWHERE` is not set
CREATE TABLE trades (symbol TEXT)
WITH (connector = 'kafka', topic = '${NOT_SET_ANYWHERE}');
