/* Kefu widget: placeholder until the widget issue. */
