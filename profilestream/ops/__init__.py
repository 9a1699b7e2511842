"""Operations: JSON log lines and Prometheus metrics (`metrics`)."""
